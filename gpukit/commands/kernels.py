"""`gpukit kernels`: each kernel with its parameters, defaults and implementations."""

from __future__ import annotations

import json

from gpukit.commands import EXIT_FAILED, EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("kernels", help="list kernels, their parameters and implementations")
    p.add_argument("--kernel", action="append", metavar="SPEC",
                   help="show this kernel only: a name, path/to/file.py:Name or module:Name "
                        "(repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def describe(kernel) -> dict:
    """What `gpukit kernels` shows of one kernel: its describe() plus default sets and source."""
    data = kernel.describe()
    # Resolved as compare resolves them: the sets a run without --param measures, every
    # parameter filled in, so that what is shown here is what compare runs.
    data["default_param_sets"] = [kernel.resolve_params(p) for p in kernel.default_param_sets]
    data["outputs"] = list(kernel.outputs)
    data["cuda_file"] = kernel.cuda_file
    if "array_function" in data:
        # What gpukit inferred is only half the answer: which backends can run it, and why not.
        from gpukit import backends, runner
        data["backends"] = {
            name: ({"available": True, "variants": entry["variants"],
                    "parallel": entry["parallel"]} if entry["available"]
                   else {"available": False, "reason": entry["reason"]})
            for name, entry in runner.probe_backends(backends.NAMES, kernel).items()}
    return data


def array_lines(data: dict) -> list[str]:
    """What gpukit inferred of an array-namespace function, and where it can run."""
    info = data["array_function"]
    lines = ["  an array-namespace function: numpy on the CPU backends, cupy on the GPU"]
    lines.append("  inputs: " + "; ".join(f"{k} {v}" for k, v in info["inputs"].items()))
    lines.append("  outputs: " + "; ".join(f"{k} {v}" for k, v in info["outputs"].items())
                 + " (one value per row)")
    lines.append(f"  row-wise: {'yes' if info['rowwise'] else 'no'}, {info['rowwise_how']}")
    tols = sorted(set(info["tolerances"].values()))
    tol = " or ".join(f"{t:.3g}" for t in tols)
    lines.append(f"  check: max |out - ref| / max |ref| of each output <= {tol} "
                 f"({info['tolerance_how']}); reference: {info['reference']}")
    flops = info["flops_per_row"]
    lines.append("  FLOPs per row: " + (f"{flops:g}" if isinstance(flops, float) else flops
                                        if flops else "unknown (the model rates it per row by "
                                                      "its own runs)"))
    for name, entry in data.get("backends", {}).items():
        if entry["available"]:
            how = ", as one piece" if entry["parallel"] and not info["rowwise"] else ""
            lines.append(f"  {name:10} runs it: {', '.join(entry['variants'])}{how}")
        else:
            lines.append(f"  {name:10} cannot: {entry['reason']}")
    return lines


def kernel_lines(data: dict) -> list[str]:
    lines = [f"{data['name']}: {data['summary']}" if data.get("summary") else data["name"]]
    if data.get("error"):
        return lines + [f"  cannot load: {data['error']}"]
    impls = ", ".join(data["implementations"]) or "none"
    if data.get("cuda_file"):
        impls = impls.replace("cuda", f"cuda ({data['cuda_file']})")
    lines.append(f"  implementations: {impls}")
    if data["params"]:
        several = len(data["params"]) > 1
        for p in data["params"]:
            bounds = (f"{p['minimum']}..{p['maximum']}" if p["maximum"] is not None
                      else f">= {p['minimum']}")
            # A parameter's own default fills in only where --param names the others; with a
            # single parameter compare never uses it, so it is not shown.
            fallback = f"; {p['default']} where --param names only others" if several else ""
            lines.append(f"  --param {p['name']}=N  ({bounds}): {p['help']}{fallback}")
        sets = "; ".join(",".join(f"{k}={v}" for k, v in s.items()) or "no parameters"
                         for s in data["default_param_sets"])
        lines.append(f"  compare runs, without --param: {sets}")
    else:
        lines.append("  parameters: none")
    if "array_function" in data:
        lines += array_lines(data)
    else:
        lines.append(f"  outputs: {', '.join(data['outputs'])}")
    lines.append(f"  --kernel {data['spec']}")
    return lines


def run(args) -> int:
    from gpukit import kernels
    from gpukit.errors import UsageError
    from gpukit.kernels.user import entry_points

    entries, failed = [], False
    if args.kernel:
        # The user named these: a bad one is an error (exit 2), as in compare.
        entries = [describe(kernels.load(spec)) for spec in args.kernel]
    else:
        for name in (*kernels.NAMES, *sorted(set(entry_points()) - set(kernels.NAMES))):
            try:
                entries.append(describe(kernels.load(name)))
            except UsageError as exc:  # a broken installed package must not hide the others
                entries.append({"name": name, "error": str(exc)})
                failed = True
    if args.json:
        print(json.dumps(entries, indent=1))
    else:
        for i, data in enumerate(entries):
            if i:
                print()
            print("\n".join(kernel_lines(data)))
    return EXIT_FAILED if failed else EXIT_OK
