"""The guest side: build a passthrough domain, read domains back, clean a wedged one up, read a guest image."""
