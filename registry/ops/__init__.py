"""Operations on a registry's storage beside the API: usage, quotas, garbage collection."""
