"""Rendering what the analysis found; nothing here measures or decides.

- `tables`: the terminal's tables and lines, the sentences of the answer block, CSV.
- `plots`: the figures (matplotlib on the Agg canvas), as PNG and SVG.
- `page`: one self-contained HTML page and the Markdown report, built from the two above.
"""
