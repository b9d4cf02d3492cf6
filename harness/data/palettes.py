"""Standard colour palettes of the benchmark label sets, as (N, 3) uint8 arrays.

The colours are the ones the reference toolkits draw these datasets with (ADE20K's 150-colour
table, which Pascal Context 59 reuses from its second entry on; COCO-Stuff's 171-colour table),
so qualitative samples look the way people know them. Stored as hex ``rrggbb`` text.
"""

from __future__ import annotations

import numpy as np


def palette_from_hex(text: str) -> np.ndarray:
    """``"rrggbb rrggbb ..."`` -> (N, 3) uint8 array."""
    colours = text.split()
    return np.array([[int(c[i : i + 2], 16) for i in (0, 2, 4)] for c in colours], dtype=np.uint8)


ADE20K_PALETTE = palette_from_hex(
    "787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 "
    "e005ff ebff07 96053d 787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603 "
    "0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff "
    "08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207 "
    "ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f "
    "14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff "
    "0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00 "
    "008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff "
    "ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 "
    "00ff52 000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000 "
    "8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff "
    "00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3 "
    "ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00 "
    "00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff "
    "4700ff 7a00ff 00ffb8 005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff "
)

# Pascal Context 59: the ADE20K table's entries 1..59.
PASCAL_CONTEXT_59_PALETTE = ADE20K_PALETTE[1:60].copy()

COCO_STUFF_171_PALETTE = palette_from_hex(
    "00c040 00c040 004060 80c0c0 004040 00c0e0 00c0c0 80c040 00c060 80c040 8020c0 0000e0 "
    "000040 00a0c0 800060 8000c0 0020c0 8080e0 0000c0 80a0c0 808000 800020 802000 800080 "
    "408020 00a000 000000 c080a0 002000 008080 4080a0 80a000 008000 c08020 806080 000080 "
    "400020 00e080 800000 c000a0 006080 808080 4000a0 80e080 808040 c00020 806000 8000c0 "
    "008020 40e000 000040 8080a0 406000 0080c0 0080a0 c0e000 008040 808020 c02080 0040c0 "
    "000020 40a080 804040 8000a0 402080 80c0c0 0000a0 c0a080 80c000 800060 c02000 804080 "
    "408060 40a000 004000 c080e0 402000 00c080 4080e0 c0a000 00c000 c08060 c06080 004080 "
    "400060 40e080 804000 c000e0 406080 80c080 4000e0 c0e080 80c040 c00060 c06000 8040c0 "
    "008060 00e000 404040 8080e0 006000 40c0c0 0080e0 80e000 40c040 808060 802080 4000c0 "
    "004060 00a080 c00040 8040e0 002080 c080c0 0040e0 80a080 c08000 804020 802040 c00080 "
    "40c020 00a040 400000 c0c0a0 002040 408080 40c0a0 80a040 408000 c0c020 8060c0 400080 "
    "404020 00e0c0 c00000 c040a0 0060c0 c08080 4040a0 80e0c0 c08040 c04020 806040 c000c0 "
    "00c020 40e040 400040 80c0a0 406040 4080c0 00c0a0 c0e040 408040 80c020 c020c0 4040c0 "
    "004020 40a0c0 c04040 8040a0 4020c0 c0c0c0 0040a0 c0a0c0 c0c000 804060 c02040 c04080 "
    "40c060 40a040 404000 "
)
