"""Knowledge graph (issue #20 §2): relation extraction over raw text into a SQLite triple store, and
question answering from it with the evidence sentence.

    extract.py   sentences -> candidate nominals -> pairs -> the relation model (tasks/relation.py) -> triples
    store.py     TripleStore: entities, aliases, relations, triples, provenance (SQLite)
    qa.py        KGQA: entity linking, relation prediction by exemplar questions, lookup
    evaluate.py  the official SemEval score and KGQA accuracy of a relation run
    http.py      routes and page under /apps/kg/ (`zhixing serve --app kg=DB`)
    kge_data.py  FB15k-237 / WN18RR triples, vocabularies, the filter of known triples, ranks
    embed.py     knowledge-graph embeddings: TransE, RotatE, ComplEx; training, filtered MRR / Hits@k
"""
