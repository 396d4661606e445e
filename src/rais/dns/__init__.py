"""Integrated name service: which addresses a group's DNS name advertises
(:mod:`rais.dns.zone`), an embedded authoritative server that answers for them
(:mod:`rais.dns.server`) and master-file rendering (:mod:`rais.dns.render`).

Inside this package ``import dns`` still means dnspython (imports are absolute).
"""
