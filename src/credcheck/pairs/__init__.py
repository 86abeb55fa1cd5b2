"""The credential-pair tier: RFC 9497 VOPRF over username-hash buckets (``credcheck-pairs-v1``)."""
