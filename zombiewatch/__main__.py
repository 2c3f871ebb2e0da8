"""``python -m zombiewatch``: the same as the ``zombiewatch`` command."""

from zombiewatch.cli import main

if __name__ == "__main__":
    main()
