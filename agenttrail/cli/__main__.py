"""``python -m agenttrail.cli``: the ``agenttrail`` command without the console script."""

from agenttrail.cli import main

if __name__ == "__main__":
    main(prog_name="agenttrail")
