"""The HTTP shell: SAND's REST API on Starlette (next issue)."""
