// Raising the accept backlog of a listening socket that a library opened with a small one.
#pragma once

namespace crucible {

// Debian's cpp-httplib is a compiled library that listens with a backlog of 5, so a burst of
// connections (a benchmark's thousand clients, a dashboard's reconnecting browsers) overflows it
// and waits for SYN retries. Listening again on the bound socket raises the backlog to SOMAXCONN;
// the socket is found among this process's descriptors by its IPv4 port. Returns whether one was
// found.
bool widen_listen_backlog(int port);

}  // namespace crucible
