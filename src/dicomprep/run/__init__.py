"""The run: discovery and the catalog, planning shards, shard jobs and their
journals, collecting results into the manifest and failures table, durable state files."""
