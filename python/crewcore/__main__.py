"""``python -m crewcore``: the same as the ``crewcore`` command."""

from crewcore._cli import main

if __name__ == "__main__":
    main()
