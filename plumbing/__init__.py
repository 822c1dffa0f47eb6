"""Small helpers every part may use: bearer tokens, child processes, uvicorn, retries, files.

Imports none of the parts (`model_server`, `router`, `controller`, `bluegreen`); the import
linter in CI says so. Anything here is plumbing, not product logic.
"""
