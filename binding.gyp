{
  "targets": [
    {
      "target_name": "knockport_native",
      "sources": [
        "native/addon.cc",
        "native/common.cc",
        "native/nfqueue.cc",
        "native/nflog.cc",
        "native/raw_sender.cc",
        "native/nft_context.cc",
        "native/nft_table_owner.cc",
        "native/fastopen.cc",
        "native/notify.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": [
        "-std=c++17",
        "-Wall",
        "-Wextra",
        "<!@(pkg-config --cflags libnetfilter_queue libnetfilter_log libmnl libnftables)"
      ],
      "libraries": ["<!@(pkg-config --libs libnetfilter_queue libnetfilter_log libmnl libnftables)"]
    }
  ]
}
