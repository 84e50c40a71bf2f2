#!/usr/bin/python3
"""The dashboard in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by python3-selenium against `crucible serve` on 127.0.0.1.

It starts runs through the API and checks that the runs list shows them, that a run's page
updates live while it runs, that answering a waiting promise in the form completes the run, that
cancel and fork work from their buttons, that the experiment page and the training curves draw
their charts, and that pages are usable at 400 px and from the keyboard. A screenshot of each page
goes to --artifacts.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

GATE = """name: gate
stages:
  - {name: ask, uses: wait_for, with: {promise: approval}}
  - {name: after, uses: noop}
"""
HEDGED = """name: hedged
stages:
  - name: call
    uses: sleep
    with: {duration: 400ms}
    hedging: {strategy: fixed, delay_ms: 100, budget_percent: 100}
"""
SLOW = """name: slow
stages:
  - {name: one, uses: sleep, with: {duration: 800ms}}
  - {name: two, uses: sleep, with: {duration: 800ms}}
  - {name: three, uses: sleep, with: {duration: 800ms}}
"""


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


class Api:
    def __init__(self, base, key):
        self.base, self.key = base, key

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.key)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as res:
            return json.loads(res.read())


def start_server(crucible, journal, pipelines):
    proc = subprocess.Popen(
        [crucible, "--journal", journal, "serve", "--listen", "127.0.0.1:0", "--pipelines", pipelines],
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if "serving http://" in line:
            url = line.split("serving ", 1)[1].split(" ", 1)[0].rstrip("/")
            return proc, url
    proc.kill()
    raise Failure("crucible serve did not start: " + (proc.stderr.read() or "no output"))


def make_driver():
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--crucible", required=True)
    parser.add_argument("--examples", required=True)
    parser.add_argument("--artifacts", required=True)
    args = parser.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)

    tmp = tempfile.mkdtemp(prefix="crucible-dashboard-")
    server = driver = None
    try:
        pipelines = os.path.join(tmp, "pipelines")
        os.makedirs(pipelines)
        for name, text in (("gate.yaml", GATE), ("slow.yaml", SLOW), ("hedged.yaml", HEDGED)):
            with open(os.path.join(pipelines, name), "w") as f:
                f.write(text)
        shutil.copy(os.path.join(args.examples, "experiment.yaml"), pipelines)
        journal = os.path.join(tmp, "journal.db")
        key = subprocess.check_output(
            [args.crucible, "--journal", journal, "keys", "create", "--name", "browser", "--scope", "write", "-q"],
            text=True).strip()
        server, base = start_server(args.crucible, journal, pipelines)
        api = Api(base, key)
        driver = make_driver()
        # The run page re-renders as events arrive, so an element found a moment ago may be gone.
        wait = WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException])

        def shot(name):
            driver.save_screenshot(os.path.join(args.artifacts, name + ".png"))

        def retry(action):
            for _ in range(20):
                try:
                    return action()
                except StaleElementReferenceException:
                    time.sleep(0.05)
            return action()

        def status_text():
            try:
                return driver.find_element(By.ID, "run-status").text.strip()
            except StaleElementReferenceException:
                return ""

        def open_run(run_id, suffix=""):
            driver.get(base + "/#/runs/" + run_id + suffix)

        # The runs list shows a run started through the API (after the key is entered).
        gate = api.call("POST", "/v1/runs", {"pipeline": "gate"})["run_id"]
        driver.get(base + "/")
        wait.until(lambda d: "API key" in d.find_element(By.ID, "notice").text)
        driver.find_element(By.ID, "api-key").send_keys(key + Keys.ENTER)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-run-id="{gate}"]'))
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-run-id="{gate}"]')
        check("gate" in row.text, "the runs list row names the pipeline: " + row.text)
        shot("runs")

        # A run's page updates live while it runs: stages appear one by one without a reload.
        slow = api.call("POST", "/v1/runs", {"pipeline": "slow"})["run_id"]
        open_run(slow)
        wait.until(lambda d: d.find_elements(By.ID, "run-status"))
        seen_rows, seen_status = set(), set()
        marker = driver.execute_script("window.__crucible_marker = 1; return window.__crucible_marker;")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                seen_status.add(status_text())
                seen_rows.add(len(driver.find_elements(By.CSS_SELECTOR, "#stages tbody tr")))
                if "completed" in seen_status and 3 in seen_rows:
                    break
            except Exception:
                pass
            time.sleep(0.1)
        check("completed" in seen_status, f"the slow run's page reached completed: {seen_status}")
        check(len(seen_rows - {3}) >= 1, f"the page showed the run before all stages finished: {seen_rows}")
        check(driver.execute_script("return window.__crucible_marker;") == marker, "the page was not reloaded")
        bars = driver.find_elements(By.CSS_SELECTOR, "#timeline .bar")
        check(len(bars) == 3, "three bars on the timeline")
        lefts = [b.rect["x"] for b in bars]
        check(lefts[0] < lefts[1] < lefts[2] and all(b.rect["width"] > 20 for b in bars),
              f"the timeline lays the stages out one after another: {[b.rect for b in bars]}")
        check("null" not in driver.find_element(By.ID, "view").text, "no 'null' leaks into the page")
        shot("run-live")

        # Fork from a chosen step: the new run's page opens and completes.
        driver.find_element(By.CSS_SELECTOR, '#fork-from option[value="/two"]').click()
        driver.find_element(By.ID, "fork").click()
        wait.until(lambda d: d.current_url.split("#/runs/")[-1] != slow and "#/runs/" in d.current_url)
        forked = driver.current_url.split("#/runs/")[-1]
        wait.until(lambda d: "completed" in status_text())
        check(api.call("GET", "/v1/runs/" + forked)["parent_run"] == slow, "the fork names its parent")
        shot("forked")

        # Human in the loop: the waiting run shows a form; submitting it completes the run.
        open_run(gate)
        wait.until(lambda d: d.find_elements(By.ID, "signal-value"))
        retry(lambda: driver.find_element(By.ID, "signal-value").clear())
        retry(lambda: driver.find_element(By.ID, "signal-value").send_keys('{"approved": true}'))
        shot("promise-form")
        retry(lambda: driver.find_element(By.ID, "signal-send").click())
        wait.until(lambda d: "completed" in status_text())
        resolved = api.call("GET", "/v1/runs/" + gate)["promises"]["resolved"]
        check(resolved and resolved[0]["value"] == {"approved": True}, f"the promise got the form's value: {resolved}")
        shot("promise-answered")

        # Cancel from the button.
        doomed = api.call("POST", "/v1/runs", {"pipeline": "gate"})["run_id"]
        open_run(doomed)
        wait.until(lambda d: d.find_elements(By.ID, "signal-value"))
        retry(lambda: driver.find_element(By.ID, "cancel").click())
        wait.until(lambda d: "cancelled" in status_text())

        # A hedged step shows its requests under it, and which one won.
        hedged = api.call("POST", "/hedged/run", {})
        check(hedged["status"] == "completed", f"the hedged run completed: {hedged.get('status')}")
        open_run(hedged["run_id"])
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline .bar.hedge-attempt"))
        requests = driver.find_elements(By.CSS_SELECTOR, "#timeline .bar.hedge-attempt")
        won = driver.find_elements(By.CSS_SELECTOR, "#timeline .bar.hedge-attempt.won")
        check(len(requests) == 2 and len(won) == 1, f"two requests, one winner: {len(requests)}, {len(won)}")
        check(requests[1].rect["x"] > requests[0].rect["x"], "the backup starts after its delay")
        check("hedged" in driver.find_element(By.ID, "stages").text or "requests" in driver.find_element(By.ID, "stages").text,
              "the stages table says the step was hedged")
        shot("hedged")

        # The experiment page draws its comparison chart (means and intervals).
        exp = api.call("POST", "/experiment/run", {})
        check(exp["status"] == "completed", f"the experiment completed: {exp.get('status')}")
        open_run(exp["run_id"], "/experiments")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "canvas.exp-chart"))
        labels = driver.execute_script(
            "const c = Chart.getChart(document.querySelector('canvas.exp-chart'));"
            "return c ? c.data.labels : null;")
        check(labels is not None and len(labels) == 3, f"the comparison chart has three groups: {labels}")
        check(len(driver.find_elements(By.CSS_SELECTOR, "table.branches tbody tr")) == 18, "18 branches listed")
        shot("experiments")

        # Training curves from the run's metrics.jsonl.
        run_dir = os.path.join(tmp, "runs", slow)
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
            for step in range(1, 51):
                f.write(json.dumps({"step": step, "loss": 2.0 / step, "eval_loss": 2.2 / step + 0.01}) + "\n")
        open_run(slow)
        wait.until(lambda d: d.find_elements(By.ID, "curves"))
        series = driver.execute_script(
            "const c = Chart.getChart(document.getElementById('curves'));"
            "return c ? c.data.datasets.map(d => [d.label, d.data.length]) : null;")
        check(sorted(series or []) == [["eval_loss", 50], ["loss", 50]], f"loss and eval curves drawn: {series}")
        shot("curves")

        # Keyboard: Tab reaches the actions.
        driver.find_element(By.TAG_NAME, "body").click()
        reached = set()
        for _ in range(40):
            driver.switch_to.active_element.send_keys(Keys.TAB)
            reached.add(driver.switch_to.active_element.get_attribute("id"))
        check({"api-key", "fork-from", "fork"} <= reached, f"Tab reaches the key field and the actions: {reached}")

        # Readable at 400 px: nothing wider than the window.
        driver.set_window_size(400, 900)
        for page in ("/#/", "/#/runs/" + slow, "/#/runs/" + exp["run_id"] + "/experiments"):
            driver.get(base + page)
            time.sleep(1.0)
            overflow = driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
            check(overflow <= 1, f"{page} fits 400 px (overflow {overflow} px)")
        shot("narrow-experiments")
        driver.get(base + "/#/runs/" + slow)
        time.sleep(1.0)
        shot("narrow-run")
        print("dashboard: all checks passed; screenshots in " + args.artifacts)
        return 0
    except Failure as e:
        if driver is not None:
            driver.save_screenshot(os.path.join(args.artifacts, "failure.png"))
        print("dashboard: FAILED: " + str(e), file=sys.stderr)
        return 1
    finally:
        if driver is not None:
            driver.quit()
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
