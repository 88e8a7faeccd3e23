"""The ``htpasswd`` access controller: Basic users from a bcrypt htpasswd file, optional access rules."""
