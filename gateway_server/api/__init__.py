"""HTTP layer: paths, error rendering, the hot invocation handlers and the admin/docs routes."""
