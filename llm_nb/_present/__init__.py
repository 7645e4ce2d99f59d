"""The presentation layer under the magics (``llm_nb._magics``) and the panels
(``llm_nb._widgets``): what both need to show calls in a notebook.

* ``_calls``: a model's call as it is shown (its stream, how it ended).
* ``_runner``: the one loop consuming streams, its throttled frames and its stop;
  ``run_calls``, its blocking form for a cell.
* ``_work``: where the work runs (a task on the kernel's loop, or llm_nb's loop with this
  thread waiting and drawing) and the interruptible wait.
* ``_render``: answers as MIME bundles (untrusted text made safe HTML).
* ``_display``: a cell's live output (rich, updated in place; or printed).
* ``_figures``: the footer under each answer.
* ``_tables``: the stats table under side-by-side answers.
* ``_catalog``: every known server's models, by server.

Imports point down: this package imports neither ``_magics`` nor ``_widgets``, and neither
of those imports the other (``tests/test_layers.py`` checks it).
"""
