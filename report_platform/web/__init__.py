"""The web console and its JSON API (`report-platform console`): `app.create_app()` builds the ASGI app."""
