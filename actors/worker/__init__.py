"""The in-process tier: the actors a worker process hosts on its I/O loop
(supervisors.inprocess, wsup.ioloop).  Same Thespian Actor API as the
process tier; see docs/architecture.md."""
