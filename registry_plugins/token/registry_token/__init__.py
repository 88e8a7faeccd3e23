"""The ``token`` access controller: Bearer JWTs from a token server, as Distribution's ``auth.token``."""
