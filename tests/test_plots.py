"""What the plots choose to draw (the drawing itself is checked through `report --plots`)."""

from __future__ import annotations

import synthetic
from gpukit import analysis
from gpukit.reporting import plots
from gpukit.phases import COMPUTE


def test_timing_draws_each_variant_at_its_most_workers_and_any_fastest_worker_count():
    n1, n2 = 2**20, 2**22
    cases = [synthetic.make_case("serial/numpy", n, {COMPUTE: t})
             for n, t in ((n1, 1.0), (n2, 4.0))]
    # One process beats two at the larger size (and everything else there): a finding will
    # name "processes/numpy/shm x1", so the plot must have its line.
    cases += [synthetic.make_case("processes/numpy/shm", n1, {COMPUTE: 2.0}, workers=w)
              for w in (1, 2)]
    cases += [synthetic.make_case("processes/numpy/shm", n2, {COMPUTE: t}, workers=w)
              for w, t in ((1, 2.0), (2, 3.0))]
    idx = analysis.index({"cases": cases})
    pkey = analysis.params_key(cases[0]["params"])
    assert plots._timing_lines(idx, pkey) == [("processes/numpy/shm", 1),
                                              ("processes/numpy/shm", 2), ("serial/numpy", 1)]
    # Where the most workers are also the fastest, nothing is added.
    del idx[(pkey, "processes/numpy/shm", 1, n2)]
    assert ("processes/numpy/shm", 1) not in plots._timing_lines(idx, pkey)


def _one_panel_without_params():
    """nbody-like results: one parameter set, and it is empty."""
    cases = [synthetic.make_case("serial/numpy", n, {COMPUTE: 1e-9 * n}, params={})
             for n in (2**10, 2**12)]
    for case in cases:
        case["params"] = {}
    return {"machine": {"cores": 2}, "sweep": {"kernel": "nbody", "param_sets": [{}],
                                               "sizes": [2**10, 2**12]},
            "backends": {"serial": {"gpu": False, "parallel": False}}, "sessions": [],
            "cases": cases}


def test_one_panel_figures_keep_their_title_inside_and_name_no_empty_params_or_wrong_unit():
    data = _one_panel_without_params()
    for fig in (plots.timing(data), plots.phase_bars(data, sizes=[2**12])):
        fig.draw_without_rendering()
        title = fig._suptitle.get_window_extent(fig._get_renderer())
        assert 0 <= title.x0 and title.x1 <= fig.bbox.width, (title, fig.bbox.width)
        for ax in fig.axes:
            assert "()" not in ax.get_title() and ax.get_title().startswith("nbody")
    # No kernel says what its rows are: "n (points)" would be wrong for nbody's bodies.
    assert plots.timing(data).axes[0].get_xlabel() == "n"


def test_roofline_labels_do_not_overlap_when_two_roofs_are_close():
    # One core's memory bandwidth 5% under all cores': their labels used to land on each other.
    data = synthetic.load_cpu()
    stored = {"format": "gpukit-ceilings", "version": 1, "machine": {},
              "figures": {"host_copy_1t_gbps": 20.0, "host_copy_all_gbps": 21.0,
                          "host_numpy_1t_gflops": 12.0}}
    an = analysis.analyze(data, stored)
    fig = plots.roofline(data, an)
    plots.render(fig)  # laid out and drawn as a saved file is
    renderer = fig._get_renderer()
    labels = [t for t in fig.axes[0].texts if "GB/s" in t.get_text() or "GFLOP/s" in t.get_text()]
    assert len(labels) == 4, [t.get_text() for t in labels]  # two memory, one and two cores
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
