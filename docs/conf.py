"""Sphinx configuration of fastnn's documentation.

Build it from the repository root with the ``docs`` extra installed (and fastnn installed or
built in place)::

    pip install ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

The guide pages are Markdown (MyST), the API reference is generated from the numpydoc
docstrings (autosummary), and the gallery's scripts (docs/examples/plot_*.py) run at build time
to draw their figures (sphinx-gallery).
"""
import inspect
import re

import fastnn

project = "fastnn"
author = "the fastnn developers"
copyright = "the fastnn developers"  # noqa: A001  (Sphinx's name)
release = fastnn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples/README.rst", "examples/*.py", "**/*.ipynb",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.codeobj.json"]
templates_path = ["_templates"]
root_doc = "index"

# -- MyST: the guide pages --------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links work down to ### headings

# -- the API reference ------------------------------------------------------------------------


def _exported():
    """{module: {name: "fastnn.NAME"}}: the classes and functions a module defines that
    ``fastnn`` exports too.  They are documented once, under their ``fastnn.NAME`` spelling
    (api/index.rst); a module's page links to that page instead of repeating it."""
    out = {}
    for name in fastnn.__all__:
        obj = getattr(fastnn, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            out.setdefault(obj.__module__, {})[obj.__qualname__] = f"fastnn.{name}"
    return out


autosummary_context = {"exported": _exported()}
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"          # the numpydoc Parameters sections carry the types
add_module_names = False
numpydoc_show_class_members = False  # the class template lists the methods
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# Docstring checks that must pass (warnings fail the build with -W), on what ``fastnn``
# exports (its classes with their methods, its functions): every parameter documented (PR01)
# and no documented parameter that does not exist (PR02).  The modules' other names are
# checked by tests/test_docstrings.py's rules.
numpydoc_validation_checks = {"PR01", "PR02"}
_checked = sorted(name for name in fastnn.__all__
                  if inspect.isclass(getattr(fastnn, name))
                  or inspect.isfunction(getattr(fastnn, name)))
numpydoc_validation_exclude = {  # numpydoc matches the documented name: fastnn.NAME[.member]
    r"^(?!fastnn\.(?:" + "|".join(_checked) + r")(?:\.[A-Za-z]\w*)?$)",
}

# -- the gallery ------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",     # every plot_*.py runs at build time
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "matplotlib_animations": False,
    "reference_url": {},
}

# -- HTML -------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"fastnn {release}"
html_static_path = ["_static"]
html_css_files = ["fastnn.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"index": [], "install": []}
html_show_sourcelink = False


# numpydoc's validation looks for a `def` or `class` line in an object's source and raises
# StopIteration for members defined by assignment (``name = property(...)``, an alias such as
# ``alias = method``); such an object then has no line number, as numpydoc does for objects
# without source.
def _patch_numpydoc_def_line():
    from numpydoc import validate

    original = validate.Validator.source_file_def_line.fget

    def source_file_def_line(self):
        try:
            return original(self)
        except StopIteration:
            return None

    validate.Validator.source_file_def_line = property(source_file_def_line)


_patch_numpydoc_def_line()


def _skip_member(app, what, name, obj, skip, options):
    """scikit-learn generates set_fit_request & co. (metadata routing) on every estimator;
    they are scikit-learn's, documented there."""
    if what == "class" and name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
