"""The web dashboard: server-rendered pages for one account (see ``docs/dashboard.md``).

``routes.py`` (the pages; registered in ``app.py``), ``auth.py`` (header or login session),
``session.py`` (the signed cookie, pure), ``views.py`` (what pages show, pure), ``render.py``
(Jinja2 with autoescape, security headers), ``templates/`` and ``static/``.
"""
