"""The ``flaxdev`` subcommands, one module each.

Each module has ``add_parser(subparsers)``, which registers its parser and
sets ``run`` (``run(args) -> exit status``) as a default.
"""
