"""`gpukit backends`: each backend, available or not, with the reason."""

from __future__ import annotations

from gpukit.commands import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("backends", help="list backends, available or not, with the reason")
    p.add_argument("--kernel", default="polyval",
                   help="list the variants for this kernel: a name, path/to/file.py:Name or "
                        "module:Name (default: polyval)")
    p.set_defaults(func=run)


def run(args) -> int:
    from gpukit import backends, kernels, runner
    kernel = kernels.load(args.kernel)
    status = runner.probe_backends(backends.NAMES, kernel)
    for name, entry in status.items():
        if entry["available"]:
            facts = entry.get("facts") or {}
            detail = ", ".join(f"{k} {v}" for k, v in facts.items() if isinstance(v, (str, int)))
            print(f"{name:10} available    {', '.join(entry['variants'])}"
                  + (f"  [{detail}]" if detail else ""))
        else:
            print(f"{name:10} unavailable  {entry['reason']}")
    return EXIT_OK
