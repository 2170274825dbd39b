"""observe: what the ObserverActor serves on --metrics-port, as plain classes.

Sans-I/O pieces of the observer (no sockets, no actors): the HTTP request
reader and the live feed's framing (http.py), the observer's view of the
workers — links, health, readiness, rates (state.py) — and the Prometheus
text rendering of the workers' snapshots (exposition.py).  The page served at
``/`` is live.html.  The actor that owns the port is actors/observer.py.
"""
