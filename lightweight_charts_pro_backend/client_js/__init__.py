"""The browser client (``clients/js``), built and shipped with the package: ``module/`` holds the
compiled ES modules, served at ``/client/<name>.js`` (``routes.py``)."""
