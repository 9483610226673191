# Turns run.sh's samples ("KEY WHO VALUE" lines; VALUE "n/a:REASON" when a
# metric cannot be measured) into the Markdown table of medians.
# WHO: chainfs, qsd, ceil (plain raw file, page cache), ceil_direct
# (plain raw file, O_DIRECT).

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
            "mirror stream commit_mid commit_active bigstream " \
            "rss_seqread rss_seqwrite rss_randread1 rss_randread4 " \
            "rss_randwrite1 rss_randwrite4 rss_mirror rss_stream " \
            "rss_commit_mid rss_commit_active rss_bigopen rss_bigstream"
    label["seqread"] = "seq read 1M, 1 job (MiB/s)"
    label["seqwrite"] = "seq write 1M, 1 job (MiB/s)"
    label["randread1"] = "rand read 4K, 1 job (IOPS)"
    label["randread4"] = "rand read 4K, 4 jobs (IOPS)"
    label["randwrite1"] = "rand write 4K, 1 job (IOPS)"
    label["randwrite4"] = "rand write 4K, 4 jobs (IOPS)"
    label["mirror"] = "mirror sync=full to new qcow2, until complete (s)"
    label["stream"] = "stream, whole chain (s)"
    label["commit_mid"] = "commit mid into base, intermediate (s)"
    label["commit_active"] = "commit top+mid into base, active, until complete (s)"
    label["bigstream"] = "stream, sparse " big " chain (s)"
    label["rss_bigopen"] = "peak RSS: sparse " big " chain opened, 16 MiB read (MiB)"
    label["rss_bigstream"] = "peak RSS: sparse " big " chain streamed (MiB)"
    unit["seqread"] = unit["seqwrite"] = "MiB/s"
    unit["randread1"] = unit["randread4"] = unit["randwrite1"] = unit["randwrite4"] = "IOPS"
    unit["mirror"] = unit["stream"] = unit["commit_mid"] = unit["commit_active"] = unit["bigstream"] = "s"
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
        if (c != "" && q != "" && q > 0) {
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
}
