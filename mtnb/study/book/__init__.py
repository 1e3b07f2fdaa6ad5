"""The Jupyter Book of a grid's runs: ``mtnb book GRID``.

Reads what ``mtnb run GRID`` left under ``runs/<grid>/`` and executes nothing: the jobs' records
(job.json, done.json, failed.json), the zero-shot results tables (every ``results.csv`` under a
finished job's output folder), the CKA job's and each SVD job's tables and figures, the benchmark
figures in ``runs/benchmarks/*.json`` and the executed notebooks of every kind (pretrain,
finetune, zeroshot, cka, svd). It writes a book source into
``runs/<grid>/book/`` and builds it with jupyter-book (1.x) into ``runs/<grid>/book/_build/html``:

    runs/<grid>/book/
        _config.yml         the project's _config.yml, execution off, this grid's title
        _toc.yml            generated
        overview.md         the grid, its jobs (done, failed, pending), wall times, the mtnb code
                            versions when jobs ran different ones, where things are
        results.md          the grid's family (when its ``book:`` key names one), Table 1 and
                            Table 4 analogs with 95% intervals over seeds, the transfer gap
        pretraining.md      what each pretrain job trained: steps, tokens, speed, held-out loss
                            before and after, chrF per direction beside its bars
        cka.md, svd.md      the CKA job's figures and tables; a section per SVD job
        performance.md      benchmark figures, job times and notebook start-up share
        about.md            the project's introduction (book/intro.md)
        figures/            figures copied from the runs or drawn here from their tables
        notebooks/<kind>.md, notebooks/<kind>/<id>.ipynb   the executed notebooks, titled by
                            their parameters

Jobs are the grid as it stands (``mtnb.study.runner.expand``): a folder left by an older version of
the grid or its notebooks is counted on the overview page but not shown. The numbers and
their intervals come from ``mtnb.study.summary``, the verdicts from ``mtnb.study.findings``,
and every file of a job through ``mtnb.study.outputs``.

One module per page (``overview``, ``results`` with ``family``, ``pretraining``, ``cka``, ``svd``,
``performance``), each with its fixed prose in ``templates/<page>.md`` (``markdown.prose``);
``collect`` reads the runs once, ``notebooks`` adds the executed notebooks, ``build`` writes
the source and runs jupyter-book.
"""
