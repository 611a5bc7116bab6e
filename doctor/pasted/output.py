"""`gpudoctor check --from PATH...`: the pasted run's outputs, the same outputs and exit codes as `check`."""

from __future__ import annotations

from doctor.pasted.run import PastedRun, load_pasted, run_pasted


def to_json(run: PastedRun, redact: bool = True) -> dict[str, object]:
    from doctor.render import make_redactor
    from doctor.render import to_json as base_json

    doc = base_json(run.report, redact)  # type: ignore[arg-type]
    red = make_redactor(run.report, redact)  # type: ignore[arg-type]
    doc["errors_in_evidence"] = [_redact_obj(t, red) for t in run.ties]
    return doc


def _redact_obj(o, red):  # type: ignore[no-untyped-def]
    if isinstance(o, str):
        return red.text(o)
    if isinstance(o, list):
        return [_redact_obj(x, red) for x in o]
    if isinstance(o, dict):
        return {k: _redact_obj(v, red) for k, v in o.items()}
    return o


def render_terminal(run: PastedRun, console, verbose: bool = False, redact: bool = True) -> None:  # type: ignore[no-untyped-def]
    from rich.markup import escape

    from doctor.render import make_redactor
    from doctor.render import render_terminal as base

    red = make_redactor(run.report, redact)  # type: ignore[arg-type]
    src = run.report.source  # type: ignore[attr-defined]
    console.print("[bold]Evidence[/bold] (pasted; verdicts decided only from these inputs):")
    for k, v in src.details.items():
        if k.startswith("input ") or k == "gpus checked":
            console.print(f"  {escape(k)}: {escape(red.text(v))}")
    base(run.report, console, verbose=verbose, redact=redact)  # type: ignore[arg-type]
    if run.ties:
        console.print()
        console.print("[bold]Errors in the evidence[/bold]")
        for t in run.ties:
            console.print(f"  [bold]{escape(str(t['title']))}[/bold] ({escape(str(t['where']))}): {escape(red.text(str(t['seen'])))}")
            for c in t["causes"]:  # type: ignore[attr-defined]
                console.print(f"    - {escape(red.text(c['cause']))}: {escape(red.text(c['verdict']))}")




def cmd_check_from(args) -> int:  # type: ignore[no-untyped-def]
    """`gpudoctor check --from PATH...`: same outputs and exit codes as `check`."""
    import json

    from doctor.errors import BadInput as _Bad

    if getattr(args, "snapshot", None):
        raise _Bad("--from and --snapshot cannot be used together: check either pasted outputs or a snapshot")
    pf = load_pasted(list(args.from_paths))
    run = run_pasted(pf, ", ".join(args.from_paths), gpu=args.gpu, only=args.only)
    redact = not args.no_redact

    def table() -> None:
        from rich.console import Console

        render_terminal(run, Console(highlight=False, soft_wrap=False), verbose=args.verbose, redact=redact)

    from doctor.cli import emit_outputs

    emit_outputs(args, run.report, "gpudoctor-pasted", lambda: json.dumps(to_json(run, redact), indent=2, ensure_ascii=False) + "\n",
                 table)
    return run.report.exit_code  # type: ignore[attr-defined, no-any-return]
