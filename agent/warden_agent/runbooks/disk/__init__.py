"""disk-quarantine, disk-restore, disk-purge: free disk space in a way that can be undone.

Old temp files and old rotated logs are moved (never deleted) into a quarantine batch:
QUARANTINE/<batch>/gzip/<original absolute path> gzip-compressed when that saves at least a
tenth, else QUARANTINE/<batch>/files/<original absolute path> as they were. A manifest records
what each file was (size, SHA-256, mode, owner, times) and how it is stored, so disk-restore can
put every one back exactly. Compressing is what frees space at once when the quarantine shares
the filesystem it cleans (the usual host); a file stored as is there frees its space only when
disk-purge deletes the batch after the retention.

Paths are walked through folder file descriptors opened with O_NOFOLLOW, so a folder in a
world-writable /tmp that someone swaps for a symlink while we work is refused, never followed.

Modules by job: scan (finding the old files), moving (one file into a batch, compressed or
as is), quarantine, restore and purge (the three runbooks), manifest (a batch on disk: its
layout, manifest and lock), files (file-descriptor-safe copies and renames), compression
(gzip and its time budget), space (filesystems' free space and the usage target).
"""
