"""The Commerce Engine simulator: a seeded flash sale, a producer that behaves like a real one, and the
ground truth the ledger must equal. The generator (:mod:`.generator`), the delivery behaviour
(:mod:`.delivery`) and the model (:mod:`.model`) are pure; :mod:`.producer`, :mod:`.runner` and
:mod:`.watch` do the I/O."""
