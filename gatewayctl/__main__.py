"""``python -m gatewayctl``: the CLI."""

from gatewayctl.cli.app import main

if __name__ == "__main__":
    main()
