"""A callback link, for people and machines.

Opened in a browser (GET), a link shows a small page: what the link is for (the program's
`title`), the reason the program gave if it refused the last answer (`cb.reject(...)`),
and a way to answer: one button per choice when the program asked for `choices` (with an
optional comment), else a text box (JSON when the program asked for `json=True`). The page's
form posts back to the link; the answer is delivered as a JSON body (`{"choice": ...,
"comment": ...}`) or as the text typed.

Posted by a machine, a delivery is checked before it is accepted, so a malformed body never
spends a single-use link: a body declared JSON must parse; with `json=True` it must be JSON;
with `choices` it must choose one (`{"choice": "approve"}`, or a `choice=` form field).
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qs

from flowmetal.api.http import ApiError

PAGE_FIELD = "_flowmetal_page"  # marks a submission of the page's own form


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{html.escape(title)}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em;color:#222}}
h1{{font-size:1.3em}}button{{font-size:1em;padding:.5em 1.4em;margin:.3em .6em .3em 0;cursor:pointer}}
textarea{{width:100%;min-height:5em;font:inherit}}.note{{background:#fff4d6;padding:.6em .8em;border-radius:4px}}
.muted{{color:#666;font-size:.9em}}</style></head>
<body>{body}</body></html>
"""


def _heading(options: dict[str, Any]) -> str:
    return str(options.get("title") or "A program is waiting for an answer")


def open_page(options: dict[str, Any], error: str | None = None) -> str:
    """The page of a link that takes an answer."""
    title = _heading(options)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if options.get("rejected"):
        parts.append(f'<p class="note">The last answer was not accepted: {html.escape(str(options["rejected"]))}</p>')
    if error:
        parts.append(f'<p class="note">{html.escape(error)}</p>')
    form = [f'<form method="post"><input type="hidden" name="{PAGE_FIELD}" value="1">']
    choices = options.get("choices")
    if choices:
        form.append('<p><label>Comment (optional)<br><textarea name="comment"></textarea></label></p><p>')
        form += [f'<button type="submit" name="choice" value="{html.escape(str(c))}">{html.escape(str(c))}</button>'
                 for c in choices]
        form.append("</p>")
    else:
        what = "Your answer (JSON)" if options.get("json") else "Your answer"
        form.append(f'<p><label>{what}<br><textarea name="text" required></textarea></label></p>'
                    '<p><button type="submit">Send</button></p>')
    form.append("</form>")
    parts.append("".join(form))
    parts.append('<p class="muted">This link takes one answer.</p>')
    return _page(title, "\n".join(parts))


def status_page(status: int, options: dict[str, Any] | None) -> str:
    """The page of a link that takes no answer (any more)."""
    title = _heading(options or {})
    text = {
        202: "Thank you: your answer was delivered.",
        404: "There is no such link.",
        409: "This link has been answered already: it takes one answer.",
        410: "This link is no longer in use: the program that made it has ended.",
    }[status]
    heading = title if status != 404 else "Unknown link"
    return _page(heading, f"<h1>{html.escape(heading)}</h1>\n<p>{html.escape(text)}</p>")


def _is_json(content_type: str | None) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _is_form(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded"


def _form(text: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def from_page(content_type: str | None, body: bytes) -> bool:
    return _is_form(content_type) and PAGE_FIELD in _form(body.decode("utf-8", errors="replace"))


def delivery(options: dict[str, Any], method: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What the program gets (method, headers, body, content_type, choice), after checking the
    delivery against what the program asked for; ApiError 422 (nothing spent) if it does not fit."""
    text = body.decode("utf-8", errors="replace")
    content_type = headers.get("content-type")
    choices = [str(c) for c in options.get("choices") or []]
    choice: str | None = None
    if from_page(content_type, body):  # the page's form: an answer typed or clicked by a person
        fields = _form(text)
        if choices:
            choice = fields.get("choice")
            answer: dict[str, Any] = {"choice": choice}
            if fields.get("comment", "").strip():
                answer["comment"] = fields["comment"].strip()
            text, content_type = json.dumps(answer), "application/json"
        else:
            text = fields.get("text", "")
            content_type = "application/json" if options.get("json") else "text/plain; charset=utf-8"
        headers = dict(headers, **{"content-type": content_type})
    parsed: Any = None
    if _is_json(content_type) or options.get("json"):
        try:
            parsed = json.loads(text)
        except ValueError as e:
            raise ApiError(422, "MalformedBody", f"the body is not JSON ({e}); this link is still open") from None
    if choices:
        if choice is None:
            if isinstance(parsed, dict):
                choice = parsed.get("choice")
            elif _is_form(content_type):
                choice = _form(text).get("choice")
        if choice not in choices:
            raise ApiError(422, "BadChoice", f"the answer must choose one of {', '.join(choices)} "
                           "(a JSON body {\"choice\": ...} or a choice= form field); this link is still open")
    out: dict[str, Any] = {"method": method, "headers": headers, "body": text, "content_type": content_type}
    if choices:
        out["choice"] = choice
    return out
