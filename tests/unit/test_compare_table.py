"""The compare table names the shortlist its methods share: under shortlist.source: asmk the global row is the ASMK
ranking itself, and a title saying "global shortlist" had a new user read it as VLAD's."""

from retrieval.evaluation.compare import compare_rows, render_markdown, shortlist_source


def _result(method, medium, source):
    hp = {"shortlist": {"source": source}} if method == "global" else {"global": {"shortlist": {"source": source}}}
    return {
        "n_queries": 2,
        "n_db": 9,
        "metrics": {"mAP": {"E": medium, "M": medium, "H": medium}},
        "timing": {},
        "hyperparameters": hp,
    }


def test_the_table_names_the_shortlist_the_methods_share():
    asmk = {"global": _result("global", 90.0, "asmk"), "sv": _result("sv", 92.0, "asmk")}
    assert shortlist_source(asmk) == "asmk"
    md = render_markdown("lm", compare_rows(asmk, None), shortlist=shortlist_source(asmk))
    assert md.startswith("# lm: methods on the same shortlist: the ASMK ranking (shortlist.source: asmk;")
    assert "The global row is the ASMK ranking itself" in md
    vlad = {"global": _result("global", 90.0, "vlad"), "sv": _result("sv", 92.0, "vlad")}
    md = render_markdown("lm", compare_rows(vlad, None), shortlist=shortlist_source(vlad))
    assert md.startswith("# lm: methods on the same global shortlist\n") and "ASMK" not in md
    # a re-ranker's JSON alone records it under hyperparameters.global; results recording none read as vlad
    assert shortlist_source({"sv": asmk["sv"]}) == "asmk"
    assert shortlist_source({"global": {"hyperparameters": {}}}) == "vlad"
