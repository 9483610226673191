# Turns run.sh's samples ("KEY WHO VALUE" lines; VALUE "n/a:REASON" when a
# metric cannot be measured) into the Markdown table of medians.
# WHO: chainfs, qsd, ceil (plain raw file, page cache), ceil_direct
# (plain raw file, O_DIRECT); for the deep_* keys also flat (chainfs on
# the deep chain flattened into one qcow2).

function median(key, who,    n, i, j, t, a, s) {
    s = vals[key, who]
    if (s == "")
        return ""
    n = split(substr(s, 2), a, " ")
    for (i = 2; i <= n; i++) {        # insertion sort, n is small
        t = a[i] + 0
        for (j = i - 1; j >= 1 && a[j] + 0 > t; j--)
            a[j + 1] = a[j]
        a[j + 1] = t
    }
    if (n % 2)
        return a[(n + 1) / 2] + 0
    return (a[n / 2] + a[n / 2 + 1]) / 2
}

# bm_cost(ROW, N, WHO): the change of ROW's throughput with N bitmaps
# against none, in percent: the median over the runs of each run's ratio
# (the i-th sample of each key comes from run i).
function bm_cost(row, n, who,    s0, sn, a0, an, k, i, j, t, r, m) {
    s0 = vals["bm_" row "_0", who]; sn = vals["bm_" row "_" n, who]
    if (s0 == "" || sn == "")
        return "-"
    k = split(substr(s0, 2), a0, " ")
    if (split(substr(sn, 2), an, " ") != k)
        return "-"
    m = 0
    for (i = 1; i <= k; i++) {
        if (a0[i] + 0 <= 0)
            continue
        t = an[i] / a0[i]
        for (j = m; j >= 1 && r[j] > t; j--)
            r[j + 1] = r[j]
        r[j + 1] = t
        m++
    }
    if (m == 0)
        return "-"
    t = (m % 2) ? r[(m + 1) / 2] : (r[m / 2] + r[m / 2 + 1]) / 2
    return sprintf("%+.1f%%", (t - 1) * 100)
}

function fmt(v, key) {
    if (v == "")
        return "-"
    if (key ~ /^rss_/)
        return sprintf("%.1f", v / 1024)
    if (unit[key] == "s")
        return sprintf("%.2f", v)
    if (unit[key] == "IOPS")
        return sprintf("%.0f", v)
    return sprintf("%.0f", v)
}

BEGIN {
    order = "seqread seqwrite randread1 randread4 randwrite1 randwrite4 " \
            "bm_seqwrite_0 bm_seqwrite_1 bm_seqwrite_8 " \
            "bm_randwrite1_0 bm_randwrite1_1 bm_randwrite1_8 " \
            "mirror stream commit_mid commit_active " \
            "dur_mirror dur_stream dur_commit_mid dur_commit_active " \
            "sync_mirror sync_stream sync_commit_mid sync_commit_active " \
            "backup backup_iops fleece_iops nbd_mirror nbd_mirror_lat " \
            "scale threads_scale " \
            "bigstream bigmirror bigcommit " \
            "rss_seqread rss_seqwrite rss_randread1 rss_randread4 " \
            "rss_randwrite1 rss_randwrite4 rss_mirror rss_stream " \
            "rss_commit_mid rss_commit_active rss_backup rss_fleece_iops " \
            "rss_nbd_mirror rss_nbd_mirror_lat rss_scale rss_bigopen rss_bigstream " \
            "rss_bigmirror rss_bigcommit"
    label["seqread"] = "seq read 1M, 1 job (MiB/s)"
    label["seqwrite"] = "seq write 1M, 1 job (MiB/s)"
    label["randread1"] = "rand read 4K, 1 job (IOPS)"
    label["randread4"] = "rand read 4K, 4 jobs (IOPS)"
    label["randwrite1"] = "rand write 4K, 1 job (IOPS)"
    label["randwrite4"] = "rand write 4K, 4 jobs (IOPS)"
    # The bitmaps section: the same writes with N enabled dirty bitmaps.
    nbm = split("0 1 8", bmcounts, " ")
    for (i = 1; i <= nbm; i++) {
        b = bmcounts[i]
        bms = b " bitmap" (b == 1 ? "" : "s")
        label["bm_seqwrite_" b] = "seq write 1M, 1 job, " bms " (MiB/s)"
        label["bm_randwrite1_" b] = "rand write 4K, 1 job, " bms " (IOPS)"
        unit["bm_seqwrite_" b] = "MiB/s"
        unit["bm_randwrite1_" b] = "IOPS"
    }
    bmrow["seqwrite"] = "seq write 1M, 1 job"
    bmrow["randwrite1"] = "rand write 4K, 1 job"
    bmrows = "seqwrite randwrite1"
    label["mirror"] = "mirror sync=full to new qcow2, until complete (s)"
    label["stream"] = "stream, whole chain (s)"
    label["commit_mid"] = "commit mid into base, intermediate (s)"
    label["commit_active"] = "commit top+mid into base, active, until complete (s)"
    label["backup"] = "backup sync=full to new qcow2, until concluded (s)"
    label["backup_iops"] = "rand write 4K, 1 job, during a backup at 4 MiB/s (IOPS)"
    label["fleece_iops"] = "rand write 4K, 1 job, while a fleece is active (IOPS)"
    label["nbd_mirror"] = "mirror sync=full to qemu-nbd (unix socket), until complete (s)"
    label["nbd_mirror_lat"] = "mirror sync=full to NBD with 1 ms latency, until complete (s)"
    # The durable rows: cold page cache, time until the result is durable
    # (the job's end plus a sync of the image files); the sync rows are
    # that sync's share, shown without a bar.
    ndur = split("mirror stream commit_mid commit_active", durjobs, " ")
    for (i = 1; i <= ndur; i++) {
        j = durjobs[i]
        l = label[j]
        sub(/ \(s\)$/, "", l)
        label["dur_" j] = l ", until durable, cold cache (s)"
        label["sync_" j] = "... of which the sync after " j " (s)"
        unit["dur_" j] = unit["sync_" j] = "s"
        nobar["sync_" j] = 1
    }
    # The scale section: 16 disks in one daemon, a writer and a mirror on
    # each; the thread count at the end is shown without a bar.
    label["scale"] = "16 disks with a writer and a mirror each, until all complete (s)"
    unit["scale"] = "s"
    label["threads_scale"] = "... threads of the daemon at the end of it"
    unit["threads_scale"] = "threads"
    nobar["threads_scale"] = 1
    label["bigstream"] = "stream, sparse " big " chain (s)"
    label["bigmirror"] = "mirror sync=full, sparse " big " chain, until complete (s)"
    label["bigcommit"] = "commit top into base, active, sparse " big " chain, until complete (s)"
    unit["bigmirror"] = unit["bigcommit"] = "s"
    label["rss_bigopen"] = "peak RSS: sparse " big " chain opened, 16 MiB read (MiB)"
    label["rss_bigstream"] = "peak RSS: sparse " big " chain streamed (MiB)"
    unit["seqread"] = unit["seqwrite"] = "MiB/s"
    unit["randread1"] = unit["randread4"] = unit["randwrite1"] = unit["randwrite4"] = "IOPS"
    unit["backup_iops"] = unit["fleece_iops"] = "IOPS"
    unit["backup"] = "s"
    unit["mirror"] = unit["stream"] = unit["commit_mid"] = unit["commit_active"] = unit["bigstream"] = "s"
    unit["nbd_mirror"] = unit["nbd_mirror_lat"] = "s"
}

{
    key = $1; who = $2; v = $3
    seen[key] = 1
    if (v ~ /^n\/a:/) {
        reason = substr(v, 5)
        gsub(/_/, " ", reason)
        na[key, who] = reason
        next
    }
    vals[key, who] = vals[key, who] " " v
}

END {
    print "| metric | chainfs | qemu-storage-daemon | ratio | ceiling: raw file, page cache | ceiling: raw file, O_DIRECT | bar |"
    print "|---|---:|---:|---:|---:|---:|---|"
    n = split(order, keys, " ")
    misses = 0
    for (k = 1; k <= n; k++) {
        key = keys[k]
        if (!seen[key])
            continue
        name = label[key]
        if (name == "" && key ~ /^rss_/) {
            base = substr(key, 5)
            name = label[base]
            sub(/ \([^)]*\)$/, "", name)
            name = "peak RSS: " name " (MiB)"
        }
        higher_better = (unit[key] == "MiB/s" || unit[key] == "IOPS")
        c = median(key, "chainfs"); q = median(key, "qsd")
        cc = median(key, "ceil"); cd = median(key, "ceil_direct")
        cs = fmt(c, key); qs = fmt(q, key)
        if ((key, "chainfs") in na) cs = "n/a (" na[key, "chainfs"] ")"
        if ((key, "qsd") in na) qs = "n/a (" na[key, "qsd"] ")"
        ratio = "-"; bar = "-"
        if (c != "" && q != "" && q > 0 && nobar[key]) {
            ratio = sprintf("%.2f", c / q)
        } else if (c != "" && q != "" && q > 0) {
            r = c / q
            ratio = sprintf("%.2f", r)
            ok = higher_better ? (r >= 1.0) : (r <= 1.0)
            bar = ok ? "ok" : "MISS"
            if (key ~ /^seq/ && cc != "" && c * 2 < cc) {
                bar = bar (ok ? "" : ",") " MISS (< 1/2 ceiling)"
                sub(/^ok /, "", bar)
                ok = 0
            }
            if (!ok)
                misses++
        }
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", name, cs, qs, ratio,
            fmt(cc, key), fmt(cd, key), bar
    }
    print ""
    print "ratio = chainfs / qemu-storage-daemon. The bar: ratio >= 1.00 for " \
          "throughput, <= 1.00 for time and memory; sequential I/O at least " \
          "half the page-cache ceiling. Medians of " runs " runs. " misses \
          " row(s) miss the bar."
    if (seen["deep_seqread"] || seen["deep_randread1"] || seen["deep_open"]) {
        print ""
        print "Deep chains: reads of a " deep " chain (each layer owns three " \
              "64K clusters, the base the rest) against the same disk " \
              "flattened into one qcow2 (bar: at least half of flattened); " \
              "opening a " deepopen "-layer chain (time to the first 4K read, " \
              "peak RSS, open fds):"
        print ""
        print "| metric | chainfs, deep | chainfs, flattened | deep / flattened | qemu-storage-daemon, deep | chainfs / qsd | bar |"
        print "|---|---:|---:|---:|---:|---:|---|"
        split("deep_seqread deep_randread1", dkeys, " ")
        dlabel["deep_seqread"] = "seq read 1M, 1 job (MiB/s)"
        dlabel["deep_randread1"] = "rand read 4K, 1 job (IOPS)"
        for (k = 1; k <= 2; k++) {
            key = dkeys[k]
            if (!seen[key])
                continue
            c = median(key, "chainfs"); f = median(key, "flat"); q = median(key, "qsd")
            rf = (c != "" && f > 0) ? sprintf("%.2f", c / f) : "-"
            rq = (c != "" && q > 0) ? sprintf("%.2f", c / q) : "-"
            bar = (rf == "-") ? "-" : (c * 2 >= f ? "ok" : "MISS")
            printf "| %s | %.0f | %.0f | %s | %.0f | %s | %s |\n", dlabel[key],
                c, f, rf, q, rq, bar
        }
        if (seen["deep_open"]) {
            c = median("deep_open", "chainfs"); q = median("deep_open", "qsd")
            printf "| open %s layers (s) | %.2f | - | - | %.2f | %s | - |\n", deepopen,
                c, q, (q > 0 ? sprintf("%.2f", c / q) : "-")
            c = median("rss_deep_open", "chainfs"); q = median("rss_deep_open", "qsd")
            printf "| peak RSS, %s layers open (MiB) | %.1f | - | - | %.1f | %s | - |\n",
                deepopen, c / 1024, q / 1024, (q > 0 ? sprintf("%.2f", c / q) : "-")
            c = median("fds_deep_open", "chainfs"); q = median("fds_deep_open", "qsd")
            printf "| open fds, %s layers | %.0f | - | - | %.0f | %s | - |\n",
                deepopen, c, q, (q > 0 ? sprintf("%.2f", c / q) : "-")
        }
    }
    if (seen["bm_seqwrite_0"] || seen["bm_randwrite1_0"]) {
        print ""
        print "The cost of marking dirty bitmaps: throughput with 1 and 8 " \
              "enabled bitmaps against none, per daemon (negative: slower; " \
              "median over the runs of each run's ratio, so it can differ " \
              "a little from the ratio of the medians above):"
        print ""
        print "| writes | chainfs, 1 bitmap | chainfs, 8 bitmaps | qemu-storage-daemon, 1 bitmap | qemu-storage-daemon, 8 bitmaps |"
        print "|---|---:|---:|---:|---:|"
        n = split(bmrows, rows, " ")
        for (k = 1; k <= n; k++) {
            row = rows[k]
            if (!seen["bm_" row "_0"])
                continue
            printf "| %s | %s | %s | %s | %s |\n", bmrow[row],
                bm_cost(row, 1, "chainfs"), bm_cost(row, 8, "chainfs"),
                bm_cost(row, 1, "qsd"), bm_cost(row, 8, "qsd")
        }
    }
}
