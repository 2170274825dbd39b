"""wsup: a supervised WebSocket server (Thespian actors under OTP-style supervision)."""

__version__ = "0.1.0"
