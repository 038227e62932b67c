"""Browse and search: the SQL behind :meth:`QueriesMixin.browse` and :meth:`QueriesMixin.search`
(filters, sorts, relevance tiers over the full-text indexes of items and video segments), and the
search page's highlights (``<mark>``), where each item matched, and a video's matching segments."""
from __future__ import annotations

import html
import sqlite3
from datetime import datetime, timezone
from typing import Any

from .errors import GalleryError
from .fts_query import SearchQuery, parse_search
from .items import LIVE, Page
from .schema import (
    BM25_WEIGHTS,
    FTS_COLUMNS,
    FTS_TABLE,
    FTS_TOKENIZE,
    MATCHED_IN,
    SEGMENTS_BM25_WEIGHTS,
    SEGMENTS_FTS_TABLE,
    SEGMENTS_TABLE,
    TABLE,
)
from .values import as_confidence

#: At most this many matching segments are listed per video item in a search page.
MAX_MATCHED_SEGMENTS = 100
#: The ways :meth:`QueriesMixin.browse` and :meth:`QueriesMixin.search` can sort (search also: "relevance").
SORTS = ("saved_at", "caption", "confidence")
KINDS = ("photo", "video")
MARK_START, MARK_END = "\x02", "\x03"  # highlight() markers, swapped for <mark> after escaping
#: What a search looks in unless asked for the unpicked candidates too: what the user saved.
SAVED_COLUMNS = ("caption", "original_name", "tag_text")
SAVED_SEGMENT_COLUMNS = ("caption", "tag_text")
#: The per-connection in-memory search index of one page's items, for highlights.
PAGE_FTS = "page_fts"


def time_bound(value: Any, what: str, end: bool) -> tuple[str, str] | None:
    """A date filter as (SQL operator, UTC ISO text to compare ``saved_at`` with), None for None.

    ``value``: a datetime (naive: UTC), a date, or ISO 8601 text ("2026-11-27", "2026-11-27T15:00").
    A day includes all of it: ``saved_to="2026-11-27"`` keeps items saved on that day.
    """
    from datetime import date, timedelta

    if value is None or value == "":
        return None
    day = None
    moment = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        day = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise GalleryError(f"The {what} date '{value}' is not a date: use YYYY-MM-DD "
                               "or YYYY-MM-DDTHH:MM") from exc
    else:
        raise GalleryError(f"The {what} date must be a date or ISO 8601 text, not {type(value).__name__}")
    if day is not None:
        moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        if end:
            return "<", (moment + timedelta(days=1)).isoformat(timespec="seconds")
        return ">=", moment.isoformat(timespec="seconds")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    text = moment.astimezone(timezone.utc).isoformat(timespec="seconds")
    return ("<=", text) if end else (">=", text)


def highlight_html(marked: str | None, caption: str) -> str:
    """FTS5 highlight() output (or the plain caption) as HTML: escaped, the matches in <mark>."""
    text = html.escape(caption if marked is None else marked, quote=False)
    return text.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


class QueriesMixin:
    """Browse and search of :class:`~.gallery.Gallery` (needs ``db`` and the :class:`~.items.ItemsMixin`)."""

    # ------------------------------------------------------- browse and search
    def _filters(self, model: Any = None, kind: Any = None, saved_from: Any = None, saved_to: Any = None,
                 min_confidence: Any = None, max_confidence: Any = None) -> tuple[str, dict]:
        """SQL conditions (``AND ...``, on the items table) and their parameters for the filters."""
        where, params = [], {}
        if model is not None and model != "":
            where.append(f"{TABLE}.model_name = :model")
            params["model"] = str(model)
        if kind is not None and kind != "":
            if kind not in KINDS:
                raise GalleryError(f"Unknown kind '{kind}': use 'photo' or 'video'")
            where.append(f"{TABLE}.kind = :kind")
            params["kind"] = kind
        for value, what, end, key in ((saved_from, "from", False, "saved_from"), (saved_to, "to", True, "saved_to")):
            bound = time_bound(value, what, end)
            if bound:
                where.append(f"{TABLE}.saved_at {bound[0]} :{key}")
                params[key] = bound[1]
        for value, op, key in ((min_confidence, ">=", "min_conf"), (max_confidence, "<=", "max_conf")):
            if value is not None and value != "":
                where.append(f"{TABLE}.confidence {op} :{key}")
                params[key] = as_confidence(value)
        return "".join(f" AND {w}" for w in where), params

    @staticmethod
    def _order(sort: Any, descending: bool, relevance: bool = False) -> str:
        """The ORDER BY text for a sort (newest first by default); ties go by id."""
        way = "DESC" if descending else "ASC"
        if relevance and sort in (None, "", "relevance"):
            return "best.tier, best.score, best.hit"
        if sort in (None, "", "saved_at"):
            return f"{TABLE}.saved_at {way}, {TABLE}.id {way}"
        if sort == "caption":
            return f"{TABLE}.caption COLLATE NOCASE {way}, {TABLE}.id {way}"
        if sort == "confidence":  # items without one last, either way (SQLite sorts NULL lowest)
            if descending:
                return f"{TABLE}.confidence DESC, {TABLE}.id DESC"
            return f"{TABLE}.confidence IS NULL, {TABLE}.confidence ASC, {TABLE}.id ASC"
        choices = ", ".join(("relevance", *SORTS) if relevance else SORTS)
        raise GalleryError(f"Unknown sort '{sort}': use one of {choices}")

    def browse(self, page: int = 1, per_page: int = 24, *, sort: str = "saved_at", descending: bool = True,
               model: str | None = None, kind: str | None = None, saved_from: Any = None, saved_to: Any = None,
               min_confidence: float | None = None, max_confidence: float | None = None) -> Page:
        """Live items (not those in the trash), newest first, one page at a time (pages past the end
        are empty).

        ``sort``: "saved_at", "caption" (A to Z when not ``descending``) or "confidence" (items without
        one last).  Filters: ``model`` (a model name, see :meth:`models`), ``kind`` ("photo"/"video"),
        ``saved_from`` / ``saved_to`` (dates or ISO 8601 times, UTC; a day counts whole),
        ``min_confidence`` / ``max_confidence``.
        """
        page, per_page = self._paging(page, per_page)
        where, params = self._filters(model, kind, saved_from, saved_to, min_confidence, max_confidence)
        order = self._order(sort, descending)
        ids = [r[0] for r in self.db.execute(
            f"SELECT id FROM {TABLE} WHERE {LIVE.format(id=f'{TABLE}.id')}{where} "
            f"ORDER BY {order} LIMIT :limit OFFSET :offset",
            {**params, "limit": per_page, "offset": (page - 1) * per_page})]
        if where:
            total = self.db.execute(f"SELECT count(*) FROM {TABLE} WHERE {LIVE.format(id=f'{TABLE}.id')}{where}",
                                    params).fetchone()[0]
        else:  # read from the deleted_at index alone
            total = self.db.execute(f"SELECT count(*) FROM {TABLE} WHERE deleted_at IS NULL").fetchone()[0]
        return self._page(self._light_items(ids), total, page, per_page)

    @staticmethod
    def _hits_sql(ranked: bool = False, tiers: bool = False) -> str:
        """Items matching :q through their own index entry or a segment's (``hit``); ``ranked`` adds
        each match's bm25 ``score``, ``tiers`` whether the saved caption alone matches (``tier`` 0)
        or not (1: through tags, file name, other candidates, or words spread over them).  (One
        column-filtered search per tier: a tier for each column cost twice the time of the search.)"""
        def extra(fts: str, rowid: str, columns: list[tuple[str, int]]) -> str:
            text = f", {fts}.rank AS score" if ranked else ""
            if tiers:
                whens = " ".join(f"WHEN {rowid} IN (SELECT rowid FROM {fts} WHERE {fts} MATCH :{param}) THEN {n}"
                                 for param, n in columns)
                text += f", CASE {whens} ELSE 1 END AS tier"
            return text

        def rank(fts: str, weights: str) -> str:
            return f" AND {fts}.rank MATCH '{weights}'" if ranked else ""

        items = extra(FTS_TABLE, f"{FTS_TABLE}.rowid", [("qc", 0)])
        segments = extra(SEGMENTS_FTS_TABLE, f"{SEGMENTS_FTS_TABLE}.rowid", [("qsc", 0)])
        return f"""SELECT {FTS_TABLE}.rowid AS hit{items}
                   FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q{rank(FTS_TABLE, BM25_WEIGHTS)}
                   UNION ALL
                   SELECT s.item_id AS hit{segments}
                   FROM {SEGMENTS_FTS_TABLE} JOIN {SEGMENTS_TABLE} AS s ON s.id = {SEGMENTS_FTS_TABLE}.rowid
                   WHERE {SEGMENTS_FTS_TABLE} MATCH :qs{rank(SEGMENTS_FTS_TABLE, SEGMENTS_BM25_WEIGHTS)}"""

    def search(self, query: str, page: int = 1, per_page: int = 24, *, sort: str = "relevance",
               descending: bool = True, model: str | None = None, kind: str | None = None,
               saved_from: Any = None, saved_to: Any = None, min_confidence: float | None = None,
               max_confidence: float | None = None, candidates: bool = True) -> Page:
        """Full-text search over captions, tags, other beam candidates and file names (live items only).
        ``candidates=False`` searches only what the user saved (caption, tags, file name: the studio's
        default), unless the query starts with ``candidates:``; ``NOT`` then leaves out only what those say
        (an unpicked candidate's "grass" does not hide an item whose saved caption has none).

        The search language (:func:`.fts_query.parse_search`): plain words must all occur;
        ``AND``, ``OR``, ``NOT`` (or ``-word``), ``"quoted phrases"``, ``( )`` and ``word*`` (prefix)
        mean what they say.  Words are stemmed ("dogs" finds "dog", "running" finds "run") and
        irregular forms match ("child" finds "children", "men" finds "man", "ran" finds "run").
        Results are ranked: items whose saved caption matches first, then those found through their
        tags, file name or other beam candidates; within each group by bm25 (weights: caption 10,
        tags 5, file name 3, other candidates 2).
        ``sort`` other than "relevance", and the filters, are as in :meth:`browse`.  If no item
        has every word of a plain-words search, items with any of them are returned
        (``Page.match_all`` is then False).  A blank query gives :meth:`browse`'s page; a query
        with no searchable word (``%``, ``*``, a lone ``AND``, punctuation) or with nothing but
        ``NOT`` words raises GalleryError saying so.

        Every item gets ``highlight`` and ``matched_in`` (see :class:`Page`).  Video items match
        through their own caption and through their segments' captions, candidates and tags;
        each video item in the page gets ``matched_segments``: its segments (idx, start, end,
        caption) that match, best first (at most :data:`MAX_MATCHED_SEGMENTS`).
        """
        page, per_page = self._paging(page, per_page)
        text = query if isinstance(query, str) else ("" if query is None else str(query))
        filters = dict(model=model, kind=kind, saved_from=saved_from, saved_to=saved_to,
                       min_confidence=min_confidence, max_confidence=max_confidence)
        parsed = parse_search(text)
        if parsed is None:
            return self.browse(page, per_page, sort="saved_at" if sort in (None, "", "relevance") else sort,
                               descending=descending, **filters)
        where, params = self._filters(**filters)
        order = self._order(sort, descending, relevance=True)
        relevance = order.startswith("best.")
        # filters and other sorts read the items' rows; relevance alone needs only the indexes
        join = f" JOIN {TABLE} ON {TABLE}.id = best.hit" if (where or not relevance) else ""
        live = LIVE.format(id="best.hit")
        for match_all in ((True, False) if parsed.plain else (True,)):
            fts = parsed.fts if match_all else parsed.any_fts
            wide = candidates is True or parsed.candidates
            q = {**params, "q": fts if wide else parsed.in_columns(SAVED_COLUMNS, fts),
                 "qs": fts if wide else parsed.in_columns(SAVED_SEGMENT_COLUMNS, fts),
                 "qc": parsed.in_column("caption", fts)}
            q["qsc"] = q["qc"]
            page_args = {**q, "limit": per_page, "offset": (page - 1) * per_page}
            count_sql = (f"SELECT count(*) FROM (SELECT DISTINCT hit FROM ({self._hits_sql()})) "
                         f"AS best{join} WHERE {live}{where}")
            try:
                if relevance:  # one pass: the page, and the number of hits alongside (a window function)
                    rows = self.db.execute(
                        f"""SELECT best.hit, best.tier, count(*) OVER () FROM (
                                SELECT hit, min(tier) AS tier, min(score) AS score
                                FROM ({self._hits_sql(ranked=True, tiers=True)}) GROUP BY hit
                            ) AS best{join} WHERE {live}{where} ORDER BY {order} LIMIT :limit OFFSET :offset""",
                        page_args).fetchall()
                    found = [(hit, tier) for hit, tier, _ in rows]
                    if rows:
                        total = rows[0][2]
                    else:  # past the end (or nothing found: then page 1 says so)
                        total = 0 if page == 1 else self.db.execute(count_sql, q).fetchone()[0]
                else:
                    total = self.db.execute(count_sql, q).fetchone()[0]
                if total == 0 and match_all and parsed.plain:
                    continue
                if not relevance:
                    ids = [r[0] for r in self.db.execute(
                        f"""SELECT best.hit FROM (SELECT DISTINCT hit FROM ({self._hits_sql()})) AS best{join}
                            WHERE {live}{where} ORDER BY {order} LIMIT :limit OFFSET :offset""", page_args)]
                    found = self.db.execute(
                        f"""SELECT hit, min(tier) FROM ({self._hits_sql(tiers=True)})
                            WHERE hit IN ({', '.join(str(int(i)) for i in ids) or 'NULL'}) GROUP BY hit""",
                        q).fetchall()
                    tier_of = dict(found)
                    found = [(i, tier_of.get(i, 1)) for i in ids]
                items = self._light_items([hit for hit, _ in found])
                tiers = dict(found)
                for item in items:
                    item["matched_in"] = tiers[item["id"]]
                self._add_highlights(items, parsed, wide)
                self._add_matched_segments(items, q["qs"], parsed, wide)
            except sqlite3.OperationalError as exc:
                if "fts5" in str(exc) or "syntax" in str(exc):  # should not happen: words are quoted
                    raise GalleryError(f"The search '{' '.join(text.split())[:80]}' could not be read: "
                                       "try plain words") from exc
                raise
            return self._page(items, total, page, per_page, match_all)
        return self._page([], 0, page, per_page, False)

    def _marked_columns(self, ids: list[int], expression: str) -> dict[int, list[str | None]]:
        """FTS5 highlight() of the index columns of the items ``ids``, for ``expression``.

        Run on a small in-memory FTS5 table (per connection, in the temp schema) holding only these
        items: on the gallery's own index each ``rowid = ?`` lookup re-runs the whole expression (a
        prefix like ``b*`` over 100,000 items took a second for a page).
        """
        db = self.db
        if not getattr(db, "_page_index_ready", False):
            db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{PAGE_FTS} USING fts5("
                       f"{', '.join(FTS_COLUMNS)}, tokenize='{FTS_TOKENIZE}')")
            db._page_index_ready = True
        rows = db.execute(f"SELECT id, {', '.join(FTS_COLUMNS)} FROM {TABLE} "
                          f"WHERE id IN ({', '.join('?' * len(ids))})", ids).fetchall()
        db.execute(f"DELETE FROM temp.{PAGE_FTS}")
        db.conn.executemany(f"INSERT INTO temp.{PAGE_FTS} (rowid, {', '.join(FTS_COLUMNS)}) "
                            f"VALUES (?{', ?' * len(FTS_COLUMNS)})", rows)
        columns = ", ".join(f"highlight({PAGE_FTS}, {i}, '{MARK_START}', '{MARK_END}')"
                            for i in range(len(FTS_COLUMNS)))
        found = db.execute(f"SELECT rowid, {columns} FROM temp.{PAGE_FTS} WHERE {PAGE_FTS} MATCH ?",
                           [expression]).fetchall()
        db.execute(f"DELETE FROM temp.{PAGE_FTS}")
        return {row[0]: list(row[1:]) for row in found}

    def _add_highlights(self, items: list[dict], parsed: SearchQuery, wide: bool = True) -> None:
        """Each item's ``highlight`` (its caption as HTML, matching words in <mark>) and ``matched_in``
        (the item's tier from the search, made a name; "tier 1" named by where the words are)."""
        marked = self._marked_columns([item["id"] for item in items], parsed.highlight_fts) if items else {}
        by_column = {name: i for i, name in enumerate(FTS_COLUMNS)}
        for item in items:
            cols = marked.get(item["id"], [None] * len(FTS_COLUMNS))
            item["highlight"] = highlight_html(cols[0], item["caption"])
            if item.pop("matched_in") == 0:
                item["matched_in"] = "caption"
                continue
            found = [name for name in ("tag_text", "original_name", "alternatives", "caption")
                     if cols[by_column[name]] and MARK_START in cols[by_column[name]]
                     and (wide or name != "alternatives")]
            # a video item found through its segments' candidates (or tags) has no mark on its own columns
            item["matched_in"] = MATCHED_IN[found[0]] if found else ("candidates" if wide else "segments")

    def _add_matched_segments(self, items: list[dict], fts: str, parsed: SearchQuery, wide: bool = True) -> None:
        """Give each video item of a search page its ``matched_segments`` (idx, start, end, caption),
        best first: those matching the search, else (words spread over segments) those with any word."""
        videos = {item["id"]: item for item in items if item.get("kind") == "video"}
        for item in videos.values():
            item["matched_segments"] = []
        any_word = parsed.highlight_fts if wide else parsed.in_columns(SAVED_SEGMENT_COLUMNS, parsed.highlight_fts)
        for expression in dict.fromkeys((fts, any_word)):
            wanted = [item_id for item_id, item in videos.items() if not item["matched_segments"]]
            if not wanted:
                return
            rows = self.db.execute(
                f"""SELECT s.item_id, s.idx, s.start, s."end", s.caption
                    FROM {SEGMENTS_FTS_TABLE} JOIN {SEGMENTS_TABLE} AS s ON s.id = {SEGMENTS_FTS_TABLE}.rowid
                    WHERE {SEGMENTS_FTS_TABLE} MATCH ? AND {SEGMENTS_FTS_TABLE}.rank MATCH '{SEGMENTS_BM25_WEIGHTS}'
                      AND s.item_id IN ({", ".join("?" * len(wanted))})
                    ORDER BY {SEGMENTS_FTS_TABLE}.rank, s.idx""",
                [expression, *wanted]).fetchall()
            for item_id, idx, start, end, caption in rows:
                found = videos[item_id]["matched_segments"]
                if len(found) < MAX_MATCHED_SEGMENTS:
                    found.append({"idx": idx, "start": start, "end": end, "caption": caption})

    def models(self) -> list[str]:
        """The model names of the live items, sorted (for a filter menu)."""
        rows = self.db.execute(f"SELECT DISTINCT model_name FROM {TABLE} WHERE deleted_at IS NULL "
                               "AND model_name IS NOT NULL AND model_name != '' ORDER BY model_name").fetchall()
        return [r[0] for r in rows]
