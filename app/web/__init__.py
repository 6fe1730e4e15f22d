"""The dashboard: server-rendered pages over the JSON API (`app.web.pages`), its assets."""
