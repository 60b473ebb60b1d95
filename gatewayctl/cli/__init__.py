"""The ``gatewayctl`` command line: thin Typer commands over the client and the config loader."""
