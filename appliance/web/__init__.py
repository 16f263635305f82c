"""The HTTP edge: Quart routes, templates, static files, the ASGI server adapter."""
