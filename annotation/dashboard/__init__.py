"""The researcher's live study page: what it reads (``selectors``), the
statistics it derives from judgments and model versions (``analytics``) and
its server-rendered SVG charts (``charts``)."""
