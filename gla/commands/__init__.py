"""The ``gla`` subcommands, one module each.

Each module's ``add_parser(subparsers, **parser_kwargs)`` adds its subcommand (options and
handler) as a plug-in's command does (:func:`gla.plugins.register_command`); :mod:`gla.cli`
builds the command line from :data:`COMMANDS` and the plug-ins' commands. What several
subcommands share (the backbone, recipe and machine options, the translation of the
library's errors into messages that name an option) is in :mod:`gla.commands.options`.
"""

from . import apply, book, datasets, estimate, finetune, run

#: The core subcommands, in the order ``gla -h`` lists them.
COMMANDS = (datasets.add_parser, run.add_parser, finetune.add_parser, apply.add_parser, estimate.add_parser,
            book.add_parser)
