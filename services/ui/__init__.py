"""The web UI under /ui/, served by the API's own Flask app (see docs/ui.md)."""
