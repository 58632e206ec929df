"""Sphinx settings of the course's website (``make site``; built by ``python -m helpers.site``).

The build script copies this file into a staging folder beside the executed notebooks and the
landing page it writes, then runs Sphinx there. The notebooks are shown as they were executed by
``make course``: MyST-NB never runs them. Everything the pages load comes from the site itself:
the theme's own files, and the ipywidgets manager and RequireJS copied from npm packages
(``helpers.site.VENDOR``) into ``_static/``.
"""

project = "Fine-tuning, by doing it"
author = "the course's authors"
copyright = "the course's authors, MIT licence"

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# The outputs are the ones `make course` saved; a missing output is a build problem, not a reason to
# run a lesson here.
nb_execution_mode = "off"
# Code cells tagged "solution" get MyST-NB's "hide-input" tag in the staging copy: folded, as in
# JupyterLab. No other cell is folded on this site, so the fold's label can say what it hides.
nb_code_prompt_show = "Show the solution"
nb_code_prompt_hide = "Hide the solution"
# Saved widget state is drawn by the ipywidgets HTML manager, loaded from this site (not a CDN).
# Its modules beyond the built-in controls would be fetched from "data-jupyter-widgets-cdn": that
# points inside the site too, so a third-party widget fails visibly (make test-site) instead of
# reaching another host.
nb_ipywidgets_js = {
    "require.js": {},
    "jupyter-widgets/assets-path.js": {},
    "jupyter-widgets/embed-amd.js": {"data-jupyter-widgets-cdn": "_static/jupyter-widgets/no-cdn/"},
}
nb_merge_streams = True

# No `$...$` maths in the lessons: leaving dollars alone keeps prices and shell variables literal
# and keeps MathJax (which Sphinx would fetch from a CDN) off every page.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "Fine-tuning, by doing it"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_extra_path = ["../extra"]          # the notebooks to download, as files
html_last_updated_fmt = None
html_show_sourcelink = False
html_copy_source = False                # the downloads are the notebooks themselves (extra/)
html_theme_options = {
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "use_issues_button": False,
    "use_edit_page_button": False,
    "launch_buttons": {},
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
# light, dark, or the system's choice: the switcher in the header starts from the system's
html_context = {"default_mode": "auto"}
