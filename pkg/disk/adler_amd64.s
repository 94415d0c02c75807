#include "textflag.h"

// Byte j of a 32-byte word weighs 32-j in s2.
DATA adlerWeights<>+0(SB)/8, $0x191a1b1c1d1e1f20
DATA adlerWeights<>+8(SB)/8, $0x1112131415161718
DATA adlerWeights<>+16(SB)/8, $0x090a0b0c0d0e0f10
DATA adlerWeights<>+24(SB)/8, $0x0102030405060708
GLOBL adlerWeights<>(SB), RODATA|NOPTR, $32

DATA adlerOnes<>+0(SB)/8, $0x0001000100010001
DATA adlerOnes<>+8(SB)/8, $0x0001000100010001
DATA adlerOnes<>+16(SB)/8, $0x0001000100010001
DATA adlerOnes<>+24(SB)/8, $0x0001000100010001
GLOBL adlerOnes<>(SB), RODATA|NOPTR, $32

// func adlerWordsAVX2(p []byte) (sum, prefix, wsum uint64)
//
// Over the 32-byte words of p (len(p) a multiple of 32, at most 1 MiB):
// sum is Σ of all bytes, prefix Σ over words of the sums of the words
// before it, wsum Σ over words of its bytes weighted 32 down to 1.
TEXT ·adlerWordsAVX2(SB), NOSPLIT, $0-48
	MOVQ p_base+0(FP), SI
	MOVQ p_len+8(FP), CX
	SHRQ $5, CX
	VPXOR Y0, Y0, Y0 // zero
	VPXOR Y1, Y1, Y1 // sums, 4×u64
	VPXOR Y2, Y2, Y2 // prefix, 4×u64
	VPXOR Y3, Y3, Y3 // weighted sums, 8×u32
	VMOVDQU adlerWeights<>(SB), Y4
	VMOVDQU adlerOnes<>(SB), Y5
	TESTQ CX, CX
	JZ reduce

loop:
	VMOVDQU (SI), Y6
	VPADDQ Y1, Y2, Y2
	VPSADBW Y0, Y6, Y7
	VPADDQ Y7, Y1, Y1
	VPMADDUBSW Y4, Y6, Y8
	VPMADDWD Y5, Y8, Y8
	VPADDD Y8, Y3, Y3
	ADDQ $32, SI
	DECQ CX
	JNZ loop

reduce:
	VEXTRACTI128 $1, Y1, X7
	VPADDQ X7, X1, X1
	VPSHUFD $0x4e, X1, X7
	VPADDQ X7, X1, X1
	MOVQ X1, AX
	MOVQ AX, sum+24(FP)

	VEXTRACTI128 $1, Y2, X7
	VPADDQ X7, X2, X2
	VPSHUFD $0x4e, X2, X7
	VPADDQ X7, X2, X2
	MOVQ X2, AX
	MOVQ AX, prefix+32(FP)

	VEXTRACTI128 $1, Y3, X7
	VPADDD X7, X3, X3
	VPMOVZXDQ X3, Y3
	VEXTRACTI128 $1, Y3, X7
	VPADDQ X7, X3, X3
	VPSHUFD $0x4e, X3, X7
	VPADDQ X7, X3, X3
	MOVQ X3, AX
	MOVQ AX, wsum+40(FP)

	VZEROUPPER
	RET
