"""The Commerce Engine simulator: a seeded flash sale, a producer that behaves like a real one, and the
ground truth the ledger must equal. The generator (:mod:`.generator`: the catalogue and stock in
:mod:`.catalogue`, orders in Commerce Engine's dialect in :mod:`.commerce_engine` and
:mod:`.ce_payloads`, or in Stockwire's own in :mod:`.stockwire_dialect`), the delivery behaviour
(:mod:`.delivery`) and the model (:mod:`.model`, :mod:`.order_rules`) are pure; :mod:`.producer`,
:mod:`.runner` and :mod:`.watch` do the I/O."""
