"""The researcher's live study page: what it reads (``selectors``), the figures it
derives from judgments and model versions (``analytics``, which reads the rows, caches
the results and leaves the statistics to :mod:`models_runtime.stats`) and its
server-rendered SVG charts (``charts``)."""
