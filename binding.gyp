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
        "native/notify.cc",
        "native/xdp.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(SHARED_INTERMEDIATE_DIR)/xdp",
        "native"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-Wall",
        "-Wextra",
        "<!@(pkg-config --cflags libnetfilter_queue libnetfilter_log libmnl libnftables)",
        "<!@(pkg-config --cflags libbpf 2>/dev/null || true)"
      ],
      "libraries": [
        "<!@(pkg-config --libs libnetfilter_queue libnetfilter_log libmnl libnftables)",
        "<!@(pkg-config --libs libbpf 2>/dev/null || true)"
      ],
      "actions": [
        {
          "action_name": "step1_xdp_skeleton",
          "inputs": [
            "native/xdp/build.sh",
            "native/xdp/step1.bpf.c",
            "native/xdp/step1.h"
          ],
          "outputs": [
            "<(SHARED_INTERMEDIATE_DIR)/xdp/step1.skel.h"
          ],
          "action": [
            "sh",
            "native/xdp/build.sh",
            "<(SHARED_INTERMEDIATE_DIR)/xdp"
          ],
          "message": "Building the step-1 XDP program"
        }
      ]
    }
  ]
}
