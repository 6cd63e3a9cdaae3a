"""How both command line programs start: a mistake is one line and exit status 2."""
from __future__ import annotations

import typer


def _cli_errors() -> tuple[type[BaseException], ...]:
    """Command line errors: typer >= 0.20 raises its own (vendored click), older typer click's."""
    found = [getattr(typer, "TyperException", None)]
    try:
        import click
        found.append(click.ClickException)
    except ImportError:
        pass
    return tuple(t for t in found if t is not None)


CLI_ERRORS = _cli_errors()


def run(app: typer.Typer, mistakes: tuple[type[BaseException], ...] = ()) -> None:
    """Run `app` on sys.argv. A command line mistake (bad option value, unknown option or
    command, missing argument) or one of `mistakes` raised by a command becomes one line,
    `error: ...` on stderr, and exit status 2: no usage box, no traceback. A bare call of a
    group still shows its help."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:                       # Ctrl-C outside a command's own handling
        typer.echo("Aborted!", err=True)
        raise SystemExit(1) from None
    except CLI_ERRORS as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()
            raise SystemExit(e.exit_code) from None
        ctx = getattr(e, "ctx", None)
        where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        fail(e.format_message() + where)
    except mistakes as e:
        fail(str(e))
    raise SystemExit(code if isinstance(code, int) else 0)


def fail(message: str) -> None:
    """`error: MESSAGE` as one line on stderr, exit status 2."""
    typer.secho(f"error: {message.strip()}".replace("\n", " "), fg="red", err=True)
    raise SystemExit(2)
