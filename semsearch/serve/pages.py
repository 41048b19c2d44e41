"""The HTML pages, rendered on the server: plain HTML, inline CSS and SVG, a few lines of JS.

Everything a user supplied or a document holds goes through `html.escape`; nothing is loaded
from another host.
"""

from __future__ import annotations

from datetime import date
from html import escape
from urllib.parse import quote, urlencode

from fastapi.responses import HTMLResponse

from semsearch.query.browse import DocumentView, ThemeView
from semsearch.query.searcher import SearchHit, ThemeSummary

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;color:#222}
nav a{margin-right:1rem} form.search{display:flex;flex-wrap:wrap;gap:.5rem;margin:1rem 0}
form.search input[name=q]{flex:1 1 20rem;font-size:1.1rem;padding:.3rem}
.hit,.theme{border-bottom:1px solid #ddd;padding:.6rem 0} .meta{color:#666;font-size:.85rem}
mark{background:#fde68a} .tag{background:#e0e7ff;border-radius:.6rem;padding:0 .5rem;
font-size:.8rem} .error{color:#b91c1c;font-weight:600} svg.volume rect{fill:#6366f1}
.keywords{color:#444;font-style:italic} blockquote{margin:.3rem 0 .3rem 1rem;color:#444}
"""

# Re-run the search when the mode changes: the one bit of JavaScript the pages need.
SCRIPT = """
document.querySelectorAll('form.search select').forEach(function (s) {
  s.addEventListener('change', function () { if (s.form.q.value.trim()) s.form.submit(); });
});
"""


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}"
        f" · semsearch</title><style>{STYLE}</style></head><body>"
        '<nav><a href="/">Search</a><a href="/themes">Themes</a>'
        '<a href="/openapi.json">API schema</a></nav>'
        f"{body}<script>{SCRIPT}</script></body></html>"
    )


def message_page(title: str, message: str) -> str:
    return _page(title, f"<h1>{escape(title)}</h1><p class=error>{escape(message)}</p>").body


def highlighted(text: str, spans: tuple[tuple[int, int], ...]) -> str:
    """`text` escaped, with the query's terms in <mark>."""
    out, at = [], 0
    for start, end in sorted(spans):
        if start < at:
            continue
        out += [escape(text[at:start]), "<mark>", escape(text[start:end]), "</mark>"]
        at = end
    out.append(escape(text[at:]))
    return "".join(out)


def _theme_link(theme_id: str | None, label: str | None) -> str:
    if not theme_id:
        return ""
    return f'<a class=tag href="/themes/{quote(theme_id)}">{escape(label or theme_id)}</a>'


def _metadata(metadata: dict) -> str:
    return " · ".join(f"{escape(str(k))}: {escape(str(v))}" for k, v in sorted(metadata.items()))


def _hit(hit: SearchHit) -> str:
    title = escape(hit.title or hit.doc_id)
    return (
        f'<div class=hit data-doc-id="{escape(hit.doc_id)}">'
        f'<a class=title href="/documents/{quote(hit.doc_id, safe="")}">{title}</a> '
        f"{_theme_link(hit.theme_id, hit.theme_label)}"
        f"<blockquote class=passage>{highlighted(hit.text, hit.highlights)}</blockquote>"
        f"<div class=meta><span class=date>{hit.partition_date}</span> · score {hit.score:.3f}"
        f" · {hit.matched_chunks} matching passage(s)"
        f"{' · ' + _metadata(hit.metadata) if hit.metadata else ''}</div></div>"
    )


def search_page(form: dict, modes: tuple[str, ...], hits: list[SearchHit], error: str | None):
    options = "".join(
        f"<option{' selected' if m == form['mode'] else ''}>{escape(m)}</option>" for m in modes
    )
    fields = (
        f'<input name=q type=search placeholder="Describe what you are looking for" '
        f'value="{escape(form["q"])}" autofocus>'
        f"<label>mode <select name=mode>{options}</select></label>"
        f'<label>from <input name=since type=date value="{escape(form["since"])}"></label>'
        f'<label>to <input name=until type=date value="{escape(form["until"])}"></label>'
        f'<input name=where placeholder="key=value filters" value="{escape(form["where"])}">'
        f'<input name=k type=number min=1 max=1000 value="{form["k"]}" style="width:4rem">'
        "<button type=submit>Search</button>"
    )
    if error:
        results = f"<p class=error>{escape(error)}</p>"
    elif form["q"].strip():
        results = f"<p class=count>{len(hits)} document(s)</p>" + "".join(map(_hit, hits))
    else:
        results = ""
    body = f"<h1>Search</h1><form class=search action=/ method=get>{fields}</form>"
    return _page("Search", body + f"<div id=results>{results}</div>")


def volume_chart(days: list[tuple[date, int]], width: int = 300, height: int = 48) -> str:
    """Documents per day as an inline SVG bar chart (a title per bar gives the exact figure)."""
    if not days:
        return ""
    top = max(n for _, n in days) or 1
    step = width / len(days)
    bars = "".join(
        f'<rect x="{i * step:.1f}" y="{height - max(1, n / top * height):.1f}" '
        f'width="{max(step - 1, 1):.1f}" height="{max(1, n / top * height):.1f}">'
        f"<title>{d}: {n}</title></rect>"
        for i, (d, n) in enumerate(days)
    )
    return (
        f'<svg class=volume width="{width}" height="{height}" role="img" '
        f'aria-label="documents per day, {days[0][0]} to {days[-1][0]}">{bars}</svg>'
    )


def themes_page(
    window: date,
    windows: list[date],
    themes: list[ThemeSummary],
    volume: dict[str, list[tuple[date, int]]],
):
    options = "".join(f"<option{' selected' if d == window else ''}>{d}</option>" for d in windows)
    picker = (
        f"<form method=get action=/themes>window ending <select name=day "
        f'onchange="this.form.submit()">{options}</select></form>'
    )
    rows = "".join(
        f'<div class=theme data-theme-id="{escape(t.theme_id)}">'
        f'<a class=label href="/themes/{quote(t.theme_id)}?day={window}">{escape(t.label)}</a>'
        f" <span class=size>{t.size} documents</span>"
        f"<div class=keywords>{escape(', '.join(t.keywords))}</div>"
        f"{volume_chart(volume.get(t.theme_id, []))}"
        + "".join(f"<blockquote>{escape(r[:240])}</blockquote>" for r in t.representatives[:2])
        + "</div>"
        for t in themes
    )
    first = min((t.window[0] for t in themes), default=window)
    body = (
        f"<h1>Themes</h1>{picker}<p>{len(themes)} themes, {first} to {window}, "
        f"largest first</p>{rows}"
    )
    return _page("Themes", body)


def theme_page(view: ThemeView):
    t, window = view.theme, view.theme.window[1]
    members = "".join(
        f'<li class=member><a href="/documents/{quote(m["doc_id"], safe="")}">'
        f"{escape(m['title'] or m['doc_id'])}</a> "
        f"<span class=meta>{m['document_date']} · {m['probability']:.2f}</span></li>"
        for m in view.members
    )
    pages = ""
    if view.offset + view.limit < view.members_total:
        after = urlencode({"day": window, "offset": view.offset + view.limit})
        pages = f'<a class=next href="/themes/{quote(t.theme_id)}?{after}">next page</a>'
    body = (
        f"<h1 class=label>{escape(t.label)}</h1><p class=keywords>{escape(', '.join(t.keywords))}"
        f"</p><p>{t.size} documents, window {t.window[0]} to {window}</p>"
        f"{volume_chart(view.volume, 600, 80)}<h2>Examples</h2>"
        + "".join(f"<blockquote>{escape(r)}</blockquote>" for r in t.representatives)
        + f"<h2>Documents ({view.offset + 1}–{view.offset + len(view.members)} of "
        f"{view.members_total})</h2><ol class=members start={view.offset + 1}>{members}</ol>"
        + pages
    )
    return _page(t.label, body)


def document_page(view: DocumentView):
    versions = "".join(
        f"<li>{escape(v.ingested_at)} from {escape(v.source_file)} ({v.text_chars} chars)"
        f"{' · current' if v.current else ''}</li>"
        for v in view.versions
    )
    chunks = "".join(
        f"<blockquote class=chunk>{escape(c['text'])}</blockquote>" for c in view.chunks
    )
    body = (
        f"<h1>{escape(view.title or view.doc_id)}</h1>"
        f"<p class=meta>{escape(view.doc_id)} · {view.partition_date}"
        f"{' · ' + _metadata(view.metadata) if view.metadata else ''} "
        f"{_theme_link(view.theme_id, view.theme_label)}</p>"
        f"<div class=text>{escape(view.text)}</div>"
        f"<h2>Chunks ({len(view.chunks)})</h2>{chunks}<h2>Versions</h2><ol>{versions}</ol>"
    )
    return _page(view.title or view.doc_id, body)
