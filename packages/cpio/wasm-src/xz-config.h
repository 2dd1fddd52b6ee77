/* config.h for liblzma built as WebAssembly by fledge (build.sh): encoder only, LZMA1/LZMA2, CRC32 check, no threads. */
#define HAVE_STDBOOL_H 1
#define HAVE__BOOL 1
#define HAVE_STDINT_H 1
#define HAVE_INTTYPES_H 1
#define HAVE_VISIBILITY 0
#define SIZEOF_SIZE_T 4
#define HAVE_CHECK_CRC32 1
#define HAVE_ENCODER_LZMA1 1
#define HAVE_ENCODER_LZMA2 1
#define HAVE_MF_HC3 1
#define HAVE_MF_HC4 1
#define HAVE_MF_BT2 1
#define HAVE_MF_BT3 1
#define HAVE_MF_BT4 1
#define TUKLIB_SYMBOL_PREFIX lzma_
#define PACKAGE_NAME "XZ Utils"
#define PACKAGE_URL ""
