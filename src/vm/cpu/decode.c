/* The decoder, described as data: each instruction is a {mask, match, handler, operand format}
 * entry (the idea of QEMU's decodetree). Compressed instructions are expanded to their 32-bit
 * equivalents by a second table, so every instruction has exactly one handler. */
#include "vm/cpu/cpu_internal.h"

/* Masks for the common encodings. */
#define M_OPC 0x0000007fU   /* opcode only (U, J) */
#define M_F3 0x0000707fU    /* opcode + funct3 (I, S, B) */
#define M_F7 0xfe00707fU    /* opcode + funct3 + funct7 (R) */
#define M_F6 0xfc00707fU    /* RV64 shift-immediate: funct6 */
#define M_RS2 0xfff0707fU   /* R with fixed rs2 (unary) */
#define M_FP 0xfe00007fU    /* OP-FP with a rounding mode */
#define M_FPRS2 0xfff0007fU /* OP-FP with a rounding mode and a fixed rs2 */
#define M_R4 0x0600007fU    /* fused multiply-add: fmt + opcode */
#define M_AMO 0xf800707fU   /* funct5 + funct3 + opcode (aq/rl ignored) */
#define M_LR 0xf9f0707fU    /* LR: rs2 must be zero */
#define M_ALL 0xffffffffU

#define ENC(opc, f3, f7) ((uint32_t)(opc) | ((uint32_t)(f3) << 12) | ((uint32_t)(f7) << 25))
#define ENC_RS2(opc, f3, f7, rs2) (ENC(opc, f3, f7) | ((uint32_t)(rs2) << 20))
#define ENC_AMO(f5, f3) (0x2fU | ((uint32_t)(f3) << 12) | ((uint32_t)(f5) << 27))

#define OP(mask, match, fn, fmt)                                                                   \
  { mask, match, fn, fmt, #fn }

static const rv_op rv_ops[] = {
    /* RV64I */
    OP(M_OPC, 0x37, op_lui, FMT_U),
    OP(M_OPC, 0x17, op_auipc, FMT_U),
    OP(M_OPC, 0x6f, op_jal, FMT_J),
    OP(M_F3, ENC(0x67, 0, 0), op_jalr, FMT_I),
    OP(M_F3, ENC(0x63, 0, 0), op_beq, FMT_B),
    OP(M_F3, ENC(0x63, 1, 0), op_bne, FMT_B),
    OP(M_F3, ENC(0x63, 4, 0), op_blt, FMT_B),
    OP(M_F3, ENC(0x63, 5, 0), op_bge, FMT_B),
    OP(M_F3, ENC(0x63, 6, 0), op_bltu, FMT_B),
    OP(M_F3, ENC(0x63, 7, 0), op_bgeu, FMT_B),
    OP(M_F3, ENC(0x03, 0, 0), op_lb, FMT_I),
    OP(M_F3, ENC(0x03, 1, 0), op_lh, FMT_I),
    OP(M_F3, ENC(0x03, 2, 0), op_lw, FMT_I),
    OP(M_F3, ENC(0x03, 3, 0), op_ld, FMT_I),
    OP(M_F3, ENC(0x03, 4, 0), op_lbu, FMT_I),
    OP(M_F3, ENC(0x03, 5, 0), op_lhu, FMT_I),
    OP(M_F3, ENC(0x03, 6, 0), op_lwu, FMT_I),
    OP(M_F3, ENC(0x23, 0, 0), op_sb, FMT_S),
    OP(M_F3, ENC(0x23, 1, 0), op_sh, FMT_S),
    OP(M_F3, ENC(0x23, 2, 0), op_sw, FMT_S),
    OP(M_F3, ENC(0x23, 3, 0), op_sd, FMT_S),
    OP(M_F3, ENC(0x13, 0, 0), op_addi, FMT_I),
    OP(M_F3, ENC(0x13, 2, 0), op_slti, FMT_I),
    OP(M_F3, ENC(0x13, 3, 0), op_sltiu, FMT_I),
    OP(M_F3, ENC(0x13, 4, 0), op_xori, FMT_I),
    OP(M_F3, ENC(0x13, 6, 0), op_ori, FMT_I),
    OP(M_F3, ENC(0x13, 7, 0), op_andi, FMT_I),
    OP(M_F6, ENC(0x13, 1, 0x00), op_slli, FMT_SHIFT),
    OP(M_F6, ENC(0x13, 5, 0x00), op_srli, FMT_SHIFT),
    OP(M_F6, ENC(0x13, 5, 0x20), op_srai, FMT_SHIFT),
    OP(M_F3, ENC(0x1b, 0, 0), op_addiw, FMT_I),
    OP(M_F7, ENC(0x1b, 1, 0x00), op_slliw, FMT_SHIFT),
    OP(M_F7, ENC(0x1b, 5, 0x00), op_srliw, FMT_SHIFT),
    OP(M_F7, ENC(0x1b, 5, 0x20), op_sraiw, FMT_SHIFT),
    OP(M_F7, ENC(0x33, 0, 0x00), op_add, FMT_R),
    OP(M_F7, ENC(0x33, 0, 0x20), op_sub, FMT_R),
    OP(M_F7, ENC(0x33, 1, 0x00), op_sll, FMT_R),
    OP(M_F7, ENC(0x33, 2, 0x00), op_slt, FMT_R),
    OP(M_F7, ENC(0x33, 3, 0x00), op_sltu, FMT_R),
    OP(M_F7, ENC(0x33, 4, 0x00), op_xor, FMT_R),
    OP(M_F7, ENC(0x33, 5, 0x00), op_srl, FMT_R),
    OP(M_F7, ENC(0x33, 5, 0x20), op_sra, FMT_R),
    OP(M_F7, ENC(0x33, 6, 0x00), op_or, FMT_R),
    OP(M_F7, ENC(0x33, 7, 0x00), op_and, FMT_R),
    OP(M_F7, ENC(0x3b, 0, 0x00), op_addw, FMT_R),
    OP(M_F7, ENC(0x3b, 0, 0x20), op_subw, FMT_R),
    OP(M_F7, ENC(0x3b, 1, 0x00), op_sllw, FMT_R),
    OP(M_F7, ENC(0x3b, 5, 0x00), op_srlw, FMT_R),
    OP(M_F7, ENC(0x3b, 5, 0x20), op_sraw, FMT_R),
    OP(M_F3, ENC(0x0f, 0, 0), op_fence, FMT_NONE),
    OP(M_F3, ENC(0x0f, 1, 0), op_fence_i, FMT_NONE),
    OP(M_ALL, 0x00000073, op_ecall, FMT_NONE),
    OP(M_ALL, 0x00100073, op_ebreak, FMT_NONE),
    OP(M_ALL, 0x10200073, op_sret, FMT_NONE),
    OP(M_ALL, 0x30200073, op_mret, FMT_NONE),
    OP(M_ALL, 0x10500073, op_wfi, FMT_NONE),
    OP(0xfe007fffU, 0x12000073, op_sfence_vma, FMT_R),
    OP(M_F3, ENC(0x73, 1, 0), op_csrrw, FMT_CSR),
    OP(M_F3, ENC(0x73, 2, 0), op_csrrs, FMT_CSR),
    OP(M_F3, ENC(0x73, 3, 0), op_csrrc, FMT_CSR),
    OP(M_F3, ENC(0x73, 5, 0), op_csrrwi, FMT_CSR),
    OP(M_F3, ENC(0x73, 6, 0), op_csrrsi, FMT_CSR),
    OP(M_F3, ENC(0x73, 7, 0), op_csrrci, FMT_CSR),

    /* H: hypervisor loads and stores (HLV/HLVX rs2 picks the kind; HSV has rd = 0), fences */
    OP(M_RS2, ENC_RS2(0x73, 4, 0x30, 0), op_hlv_b, FMT_R),
    OP(M_RS2, ENC_RS2(0x73, 4, 0x30, 1), op_hlv_bu, FMT_R),
    OP(M_RS2, ENC_RS2(0x73, 4, 0x32, 0), op_hlv_h, FMT_R),
    OP(M_RS2, ENC_RS2(0x73, 4, 0x32, 1), op_hlv_hu, FMT_R),
    OP(M_RS2, ENC_RS2(0x73, 4, 0x32, 3), op_hlvx_hu, FMT_R),
    OP(M_RS2, ENC_RS2(0x73, 4, 0x34, 0), op_hlv_w, FMT_R),
    OP(M_RS2, ENC_RS2(0x73, 4, 0x34, 1), op_hlv_wu, FMT_R),
    OP(M_RS2, ENC_RS2(0x73, 4, 0x34, 3), op_hlvx_wu, FMT_R),
    OP(M_RS2, ENC_RS2(0x73, 4, 0x36, 0), op_hlv_d, FMT_R),
    OP(0xfe007fffU, ENC(0x73, 4, 0x31), op_hsv_b, FMT_R),
    OP(0xfe007fffU, ENC(0x73, 4, 0x33), op_hsv_h, FMT_R),
    OP(0xfe007fffU, ENC(0x73, 4, 0x35), op_hsv_w, FMT_R),
    OP(0xfe007fffU, ENC(0x73, 4, 0x37), op_hsv_d, FMT_R),
    OP(0xfe007fffU, ENC(0x73, 0, 0x11), op_hfence_vvma, FMT_R),
    OP(0xfe007fffU, ENC(0x73, 0, 0x31), op_hfence_gvma, FMT_R),

    /* M */
    OP(M_F7, ENC(0x33, 0, 1), op_mul, FMT_R),
    OP(M_F7, ENC(0x33, 1, 1), op_mulh, FMT_R),
    OP(M_F7, ENC(0x33, 2, 1), op_mulhsu, FMT_R),
    OP(M_F7, ENC(0x33, 3, 1), op_mulhu, FMT_R),
    OP(M_F7, ENC(0x33, 4, 1), op_div, FMT_R),
    OP(M_F7, ENC(0x33, 5, 1), op_divu, FMT_R),
    OP(M_F7, ENC(0x33, 6, 1), op_rem, FMT_R),
    OP(M_F7, ENC(0x33, 7, 1), op_remu, FMT_R),
    OP(M_F7, ENC(0x3b, 0, 1), op_mulw, FMT_R),
    OP(M_F7, ENC(0x3b, 4, 1), op_divw, FMT_R),
    OP(M_F7, ENC(0x3b, 5, 1), op_divuw, FMT_R),
    OP(M_F7, ENC(0x3b, 6, 1), op_remw, FMT_R),
    OP(M_F7, ENC(0x3b, 7, 1), op_remuw, FMT_R),

    /* A */
    OP(M_LR, ENC_AMO(0x02, 2), op_lr_w, FMT_R),
    OP(M_LR, ENC_AMO(0x02, 3), op_lr_d, FMT_R),
    OP(M_AMO, ENC_AMO(0x03, 2), op_sc_w, FMT_R),
    OP(M_AMO, ENC_AMO(0x03, 3), op_sc_d, FMT_R),
    OP(M_AMO, ENC_AMO(0x01, 2), op_amoswap_w, FMT_R),
    OP(M_AMO, ENC_AMO(0x01, 3), op_amoswap_d, FMT_R),
    OP(M_AMO, ENC_AMO(0x00, 2), op_amoadd_w, FMT_R),
    OP(M_AMO, ENC_AMO(0x00, 3), op_amoadd_d, FMT_R),
    OP(M_AMO, ENC_AMO(0x04, 2), op_amoxor_w, FMT_R),
    OP(M_AMO, ENC_AMO(0x04, 3), op_amoxor_d, FMT_R),
    OP(M_AMO, ENC_AMO(0x0c, 2), op_amoand_w, FMT_R),
    OP(M_AMO, ENC_AMO(0x0c, 3), op_amoand_d, FMT_R),
    OP(M_AMO, ENC_AMO(0x08, 2), op_amoor_w, FMT_R),
    OP(M_AMO, ENC_AMO(0x08, 3), op_amoor_d, FMT_R),
    OP(M_AMO, ENC_AMO(0x10, 2), op_amomin_w, FMT_R),
    OP(M_AMO, ENC_AMO(0x10, 3), op_amomin_d, FMT_R),
    OP(M_AMO, ENC_AMO(0x14, 2), op_amomax_w, FMT_R),
    OP(M_AMO, ENC_AMO(0x14, 3), op_amomax_d, FMT_R),
    OP(M_AMO, ENC_AMO(0x18, 2), op_amominu_w, FMT_R),
    OP(M_AMO, ENC_AMO(0x18, 3), op_amominu_d, FMT_R),
    OP(M_AMO, ENC_AMO(0x1c, 2), op_amomaxu_w, FMT_R),
    OP(M_AMO, ENC_AMO(0x1c, 3), op_amomaxu_d, FMT_R),

    /* Zba */
    OP(M_F7, ENC(0x33, 2, 0x10), op_sh1add, FMT_R),
    OP(M_F7, ENC(0x33, 4, 0x10), op_sh2add, FMT_R),
    OP(M_F7, ENC(0x33, 6, 0x10), op_sh3add, FMT_R),
    OP(M_F7, ENC(0x3b, 0, 0x04), op_add_uw, FMT_R),
    OP(M_F7, ENC(0x3b, 2, 0x10), op_sh1add_uw, FMT_R),
    OP(M_F7, ENC(0x3b, 4, 0x10), op_sh2add_uw, FMT_R),
    OP(M_F7, ENC(0x3b, 6, 0x10), op_sh3add_uw, FMT_R),
    OP(M_F6, ENC(0x1b, 1, 0x04), op_slli_uw, FMT_SHIFT),

    /* Zbb */
    OP(M_F7, ENC(0x33, 7, 0x20), op_andn, FMT_R),
    OP(M_F7, ENC(0x33, 6, 0x20), op_orn, FMT_R),
    OP(M_F7, ENC(0x33, 4, 0x20), op_xnor, FMT_R),
    OP(M_F7, ENC(0x33, 6, 0x05), op_max, FMT_R),
    OP(M_F7, ENC(0x33, 7, 0x05), op_maxu, FMT_R),
    OP(M_F7, ENC(0x33, 4, 0x05), op_min, FMT_R),
    OP(M_F7, ENC(0x33, 5, 0x05), op_minu, FMT_R),
    OP(M_F7, ENC(0x33, 1, 0x30), op_rol, FMT_R),
    OP(M_F7, ENC(0x33, 5, 0x30), op_ror, FMT_R),
    OP(M_F7, ENC(0x3b, 1, 0x30), op_rolw, FMT_R),
    OP(M_F7, ENC(0x3b, 5, 0x30), op_rorw, FMT_R),
    OP(M_F6, ENC(0x13, 5, 0x30), op_rori, FMT_SHIFT),
    OP(M_F7, ENC(0x1b, 5, 0x30), op_roriw, FMT_SHIFT),
    OP(M_RS2, ENC_RS2(0x13, 1, 0x30, 0), op_clz, FMT_I),
    OP(M_RS2, ENC_RS2(0x13, 1, 0x30, 1), op_ctz, FMT_I),
    OP(M_RS2, ENC_RS2(0x13, 1, 0x30, 2), op_cpop, FMT_I),
    OP(M_RS2, ENC_RS2(0x1b, 1, 0x30, 0), op_clzw, FMT_I),
    OP(M_RS2, ENC_RS2(0x1b, 1, 0x30, 1), op_ctzw, FMT_I),
    OP(M_RS2, ENC_RS2(0x1b, 1, 0x30, 2), op_cpopw, FMT_I),
    OP(M_RS2, ENC_RS2(0x13, 1, 0x30, 4), op_sext_b, FMT_I),
    OP(M_RS2, ENC_RS2(0x13, 1, 0x30, 5), op_sext_h, FMT_I),
    OP(M_RS2, ENC_RS2(0x3b, 4, 0x04, 0), op_zext_h, FMT_I),
    OP(M_RS2, ENC_RS2(0x13, 5, 0x14, 7), op_orc_b, FMT_I),
    OP(M_RS2, ENC_RS2(0x13, 5, 0x35, 0x18), op_rev8, FMT_I),

    /* Zbs */
    OP(M_F7, ENC(0x33, 1, 0x24), op_bclr, FMT_R),
    OP(M_F7, ENC(0x33, 1, 0x14), op_bset, FMT_R),
    OP(M_F7, ENC(0x33, 1, 0x34), op_binv, FMT_R),
    OP(M_F7, ENC(0x33, 5, 0x24), op_bext, FMT_R),
    OP(M_F6, ENC(0x13, 1, 0x24), op_bclri, FMT_SHIFT),
    OP(M_F6, ENC(0x13, 1, 0x14), op_bseti, FMT_SHIFT),
    OP(M_F6, ENC(0x13, 1, 0x34), op_binvi, FMT_SHIFT),
    OP(M_F6, ENC(0x13, 5, 0x24), op_bexti, FMT_SHIFT),

    /* F and D */
    OP(M_F3, ENC(0x07, 2, 0), op_flw, FMT_I),
    OP(M_F3, ENC(0x07, 3, 0), op_fld, FMT_I),
    OP(M_F3, ENC(0x27, 2, 0), op_fsw, FMT_S),
    OP(M_F3, ENC(0x27, 3, 0), op_fsd, FMT_S),
    OP(M_R4, 0x43, op_fmadd_s, FMT_R4),
    OP(M_R4, 0x47, op_fmsub_s, FMT_R4),
    OP(M_R4, 0x4b, op_fnmsub_s, FMT_R4),
    OP(M_R4, 0x4f, op_fnmadd_s, FMT_R4),
    OP(M_R4, 0x43 | (1U << 25), op_fmadd_d, FMT_R4),
    OP(M_R4, 0x47 | (1U << 25), op_fmsub_d, FMT_R4),
    OP(M_R4, 0x4b | (1U << 25), op_fnmsub_d, FMT_R4),
    OP(M_R4, 0x4f | (1U << 25), op_fnmadd_d, FMT_R4),
    OP(M_FP, ENC(0x53, 0, 0x00), op_fadd_s, FMT_R),
    OP(M_FP, ENC(0x53, 0, 0x01), op_fadd_d, FMT_R),
    OP(M_FP, ENC(0x53, 0, 0x04), op_fsub_s, FMT_R),
    OP(M_FP, ENC(0x53, 0, 0x05), op_fsub_d, FMT_R),
    OP(M_FP, ENC(0x53, 0, 0x08), op_fmul_s, FMT_R),
    OP(M_FP, ENC(0x53, 0, 0x09), op_fmul_d, FMT_R),
    OP(M_FP, ENC(0x53, 0, 0x0c), op_fdiv_s, FMT_R),
    OP(M_FP, ENC(0x53, 0, 0x0d), op_fdiv_d, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x2c, 0), op_fsqrt_s, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x2d, 0), op_fsqrt_d, FMT_R),
    OP(M_F7, ENC(0x53, 0, 0x10), op_fsgnj_s, FMT_R),
    OP(M_F7, ENC(0x53, 1, 0x10), op_fsgnjn_s, FMT_R),
    OP(M_F7, ENC(0x53, 2, 0x10), op_fsgnjx_s, FMT_R),
    OP(M_F7, ENC(0x53, 0, 0x11), op_fsgnj_d, FMT_R),
    OP(M_F7, ENC(0x53, 1, 0x11), op_fsgnjn_d, FMT_R),
    OP(M_F7, ENC(0x53, 2, 0x11), op_fsgnjx_d, FMT_R),
    OP(M_F7, ENC(0x53, 0, 0x14), op_fmin_s, FMT_R),
    OP(M_F7, ENC(0x53, 1, 0x14), op_fmax_s, FMT_R),
    OP(M_F7, ENC(0x53, 0, 0x15), op_fmin_d, FMT_R),
    OP(M_F7, ENC(0x53, 1, 0x15), op_fmax_d, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x20, 1), op_fcvt_s_d, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x21, 0), op_fcvt_d_s, FMT_R),
    OP(M_F7, ENC(0x53, 2, 0x50), op_feq_s, FMT_R),
    OP(M_F7, ENC(0x53, 1, 0x50), op_flt_s, FMT_R),
    OP(M_F7, ENC(0x53, 0, 0x50), op_fle_s, FMT_R),
    OP(M_F7, ENC(0x53, 2, 0x51), op_feq_d, FMT_R),
    OP(M_F7, ENC(0x53, 1, 0x51), op_flt_d, FMT_R),
    OP(M_F7, ENC(0x53, 0, 0x51), op_fle_d, FMT_R),
    OP(M_RS2, ENC_RS2(0x53, 1, 0x70, 0), op_fclass_s, FMT_R),
    OP(M_RS2, ENC_RS2(0x53, 1, 0x71, 0), op_fclass_d, FMT_R),
    OP(M_RS2, ENC_RS2(0x53, 0, 0x70, 0), op_fmv_x_w, FMT_R),
    OP(M_RS2, ENC_RS2(0x53, 0, 0x71, 0), op_fmv_x_d, FMT_R),
    OP(M_RS2, ENC_RS2(0x53, 0, 0x78, 0), op_fmv_w_x, FMT_R),
    OP(M_RS2, ENC_RS2(0x53, 0, 0x79, 0), op_fmv_d_x, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x60, 0), op_fcvt_w_s, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x60, 1), op_fcvt_wu_s, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x60, 2), op_fcvt_l_s, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x60, 3), op_fcvt_lu_s, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x61, 0), op_fcvt_w_d, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x61, 1), op_fcvt_wu_d, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x61, 2), op_fcvt_l_d, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x61, 3), op_fcvt_lu_d, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x68, 0), op_fcvt_s_w, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x68, 1), op_fcvt_s_wu, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x68, 2), op_fcvt_s_l, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x68, 3), op_fcvt_s_lu, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x69, 0), op_fcvt_d_w, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x69, 1), op_fcvt_d_wu, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x69, 2), op_fcvt_d_l, FMT_R),
    OP(M_FPRS2, ENC_RS2(0x53, 0, 0x69, 3), op_fcvt_d_lu, FMT_R),
};

const rv_op *rv_decode_table(size_t *n) {
  *n = ARRAY_SIZE(rv_ops);
  return rv_ops;
}

/* Group the table by major opcode (bits 6:2) so a decode miss scans only that opcode's entries,
 * keeping the table's order inside each group (order decides between overlapping encodings). */
/* The handlers the block runner can execute inline, and how. */
static const struct {
  rv_exec_fn fn;
  uint8_t fast;
} rv_inline_ops[] = {
#define RV_INLINE(name, ...) {op_##name, RV_FAST_##name},
    RV_STORE_OPS(RV_INLINE) RV_BRANCH_OPS(RV_INLINE) RV_LOAD_OPS(RV_INLINE) RV_ALU_I_OPS(RV_INLINE)
        RV_ALU_R_OPS(RV_INLINE){op_jal, RV_FAST_jal},
    {op_jalr, RV_FAST_jalr},
#undef RV_INLINE
};

uint8_t rv_fast_kind(rv_exec_fn fn) {
  for (size_t i = 0; i < ARRAY_SIZE(rv_inline_ops); i++)
    if (rv_inline_ops[i].fn == fn)
      return rv_inline_ops[i].fast;
  return RV_FAST_CALL;
}

void rv_decode_index(struct rv_icache *ic) {
  for (size_t i = 0; i < ARRAY_SIZE(rv_ops); i++)
    ic->fast_of[i] = rv_fast_kind(rv_ops[i].fn);
  size_t n = 0;
  for (unsigned opc = 0; opc < 32; opc++) {
    ic->first[opc] = (uint16_t)n;
    for (size_t i = 0; i < ARRAY_SIZE(rv_ops); i++)
      if (((rv_ops[i].match >> 2) & 31) == opc)
        ic->order[n++] = (uint16_t)i;
    ic->count[opc] = (uint16_t)(n - ic->first[opc]);
  }
}

static int64_t sext(uint64_t v, int bits) { return (int64_t)(v << (64 - bits)) >> (64 - bits); }

static void rv_extract(uint32_t raw, int format, rv_insn *d) {
  d->rd = (raw >> 7) & 31;
  d->rs1 = (raw >> 15) & 31;
  d->rs2 = (raw >> 20) & 31;
  d->rs3 = (raw >> 27) & 31;
  d->rm = (raw >> 12) & 7;
  switch (format) {
  case FMT_I:
    d->imm = (int32_t)raw >> 20;
    break;
  case FMT_S:
    d->imm = (int32_t)sext(((raw >> 25) << 5) | ((raw >> 7) & 31), 12);
    break;
  case FMT_B:
    d->imm = (int32_t)sext(((raw >> 31) << 12) | (((raw >> 7) & 1) << 11) |
                               (((raw >> 25) & 63) << 5) | (((raw >> 8) & 15) << 1),
                           13);
    break;
  case FMT_U:
    d->imm = (int32_t)(raw & 0xfffff000U);
    break;
  case FMT_J:
    d->imm = (int32_t)sext(((raw >> 31) << 20) | (((raw >> 21) & 0x3ff) << 1) |
                               (((raw >> 20) & 1) << 11) | (((raw >> 12) & 0xff) << 12),
                           21);
    break;
  case FMT_SHIFT:
    d->imm = (int32_t)((raw >> 20) & 63);
    break;
  case FMT_CSR:
    d->imm = (int32_t)(raw >> 20);
    break;
  default:
    d->imm = 0;
    break;
  }
}

/* Major opcodes (bits 6:2) after which execution may not continue in a straight line or whose
 * effects (CSRs, privilege, translation, fences) must be seen before the next fetch: BRANCH, JAL,
 * JALR, SYSTEM, MISC-MEM. */
static bool rv_opcode_ends_block(unsigned opc) {
  return opc == 0x18 || opc == 0x1b || opc == 0x19 || opc == 0x1c || opc == 0x03;
}

static void rv_decode32(const struct rv_icache *ic, uint32_t raw, rv_insn *d) {
  unsigned opc = (raw >> 2) & 31;
  d->ends_block = rv_opcode_ends_block(opc);
  for (unsigned k = 0; k < ic->count[opc]; k++) {
    unsigned idx = ic->order[ic->first[opc] + k];
    const rv_op *op = &rv_ops[idx];
    if ((raw & op->mask) == op->match) {
      rv_extract(raw, op->format, d);
      d->fn = op->fn;
      /* Inline ALU and load results go straight to x[rd]: writes to x0 go through the handler. */
      d->fast = ic->fast_of[idx];
      if (d->fast > RV_FAST_LAST_STORE && d->rd == 0)
        d->fast = RV_FAST_CALL;
      return;
    }
  }
  rv_extract(raw, FMT_NONE, d);
  d->fn = rv_illegal;
  d->fast = RV_FAST_CALL;
}

void rv_decode(const struct rv_icache *ic, uint32_t raw, rv_insn *d) {
  d->raw = raw;
  if ((raw & 3) == 3) {
    d->len = 4;
    rv_decode32(ic, raw, d);
    return;
  }
  d->len = 2;
  uint32_t full = rv_expand_compressed((uint16_t)raw);
  if (full == 0) {
    rv_extract(0, FMT_NONE, d);
    d->fn = rv_illegal;
    d->fast = RV_FAST_CALL;
    d->ends_block = true;
    return;
  }
  rv_decode32(ic, full, d);
}

/* ---------------------------------------------------------------- compressed (C) */

static uint32_t enc_r(uint32_t opc, uint32_t f3, uint32_t f7, uint32_t rd, uint32_t rs1,
                      uint32_t rs2) {
  return opc | (rd << 7) | (f3 << 12) | (rs1 << 15) | (rs2 << 20) | (f7 << 25);
}
static uint32_t enc_i(uint32_t opc, uint32_t f3, uint32_t rd, uint32_t rs1, int32_t imm) {
  return opc | (rd << 7) | (f3 << 12) | (rs1 << 15) | ((uint32_t)imm << 20);
}
static uint32_t enc_s(uint32_t opc, uint32_t f3, uint32_t rs1, uint32_t rs2, int32_t imm) {
  uint32_t u = (uint32_t)imm;
  return opc | ((u & 31) << 7) | (f3 << 12) | (rs1 << 15) | (rs2 << 20) | ((u >> 5) << 25);
}
static uint32_t enc_b(uint32_t f3, uint32_t rs1, uint32_t rs2, int32_t imm) {
  uint32_t u = (uint32_t)imm;
  return 0x63 | (((u >> 11) & 1) << 7) | (((u >> 1) & 15) << 8) | (f3 << 12) | (rs1 << 15) |
         (rs2 << 20) | (((u >> 5) & 63) << 25) | (((u >> 12) & 1) << 31);
}
static uint32_t enc_j(uint32_t rd, int32_t imm) {
  uint32_t u = (uint32_t)imm;
  return 0x6f | (rd << 7) | (((u >> 12) & 0xff) << 12) | (((u >> 11) & 1) << 20) |
         (((u >> 1) & 0x3ff) << 21) | (((u >> 20) & 1) << 31);
}

static uint32_t bits(uint32_t c, int hi, int lo) { return (c >> lo) & ((1U << (hi - lo + 1)) - 1); }
static uint32_t c_rd(uint32_t c) { return bits(c, 11, 7); }
static uint32_t c_rs2(uint32_t c) { return bits(c, 6, 2); }
static uint32_t c_rdp(uint32_t c) { return 8 + bits(c, 4, 2); } /* rd' / rs2' */
static uint32_t c_rs1p(uint32_t c) { return 8 + bits(c, 9, 7); }
static int32_t c_imm6(uint32_t c) {
  return (int32_t)sext((bits(c, 12, 12) << 5) | bits(c, 6, 2), 6);
}
static uint32_t c_uimm_d(uint32_t c) { return (bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6); }
static uint32_t c_uimm_w(uint32_t c) {
  return (bits(c, 12, 10) << 3) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 6);
}

typedef uint32_t (*rv_expand_fn)(uint32_t c);

static uint32_t x_addi4spn(uint32_t c) {
  uint32_t imm =
      (bits(c, 12, 11) << 4) | (bits(c, 10, 7) << 6) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 3);
  return imm ? enc_i(0x13, 0, c_rdp(c), 2, (int32_t)imm) : 0;
}
static uint32_t x_fld(uint32_t c) {
  return enc_i(0x07, 3, c_rdp(c), c_rs1p(c), (int32_t)c_uimm_d(c));
}
static uint32_t x_lw(uint32_t c) {
  return enc_i(0x03, 2, c_rdp(c), c_rs1p(c), (int32_t)c_uimm_w(c));
}
static uint32_t x_ld(uint32_t c) {
  return enc_i(0x03, 3, c_rdp(c), c_rs1p(c), (int32_t)c_uimm_d(c));
}
static uint32_t x_fsd(uint32_t c) {
  return enc_s(0x27, 3, c_rs1p(c), c_rdp(c), (int32_t)c_uimm_d(c));
}
static uint32_t x_sw(uint32_t c) {
  return enc_s(0x23, 2, c_rs1p(c), c_rdp(c), (int32_t)c_uimm_w(c));
}
static uint32_t x_sd(uint32_t c) {
  return enc_s(0x23, 3, c_rs1p(c), c_rdp(c), (int32_t)c_uimm_d(c));
}
static uint32_t x_addi(uint32_t c) { return enc_i(0x13, 0, c_rd(c), c_rd(c), c_imm6(c)); }
static uint32_t x_addiw(uint32_t c) {
  return c_rd(c) ? enc_i(0x1b, 0, c_rd(c), c_rd(c), c_imm6(c)) : 0;
}
static uint32_t x_li(uint32_t c) { return enc_i(0x13, 0, c_rd(c), 0, c_imm6(c)); }
static uint32_t x_lui_addi16sp(uint32_t c) {
  if (c_rd(c) == 2) {
    int32_t imm =
        (int32_t)sext((bits(c, 12, 12) << 9) | (bits(c, 6, 6) << 4) | (bits(c, 5, 5) << 6) |
                          (bits(c, 4, 3) << 7) | (bits(c, 2, 2) << 5),
                      10);
    return imm ? enc_i(0x13, 0, 2, 2, imm) : 0;
  }
  int32_t imm = c_imm6(c);
  if (imm == 0)
    return 0;
  return 0x37 | (c_rd(c) << 7) | ((uint32_t)imm << 12);
}
static uint32_t x_misc_alu(uint32_t c) {
  uint32_t rd = c_rs1p(c), rs2 = c_rdp(c);
  uint32_t shamt = (bits(c, 12, 12) << 5) | bits(c, 6, 2);
  switch (bits(c, 11, 10)) {
  case 0:
    return enc_i(0x13, 5, rd, rd, (int32_t)shamt);
  case 1:
    return enc_i(0x13, 5, rd, rd, (int32_t)(shamt | 0x400));
  case 2:
    return enc_i(0x13, 7, rd, rd, c_imm6(c));
  default:
    break;
  }
  static const uint32_t f3[4] = {0, 4, 6, 7};
  if (!bits(c, 12, 12))
    return enc_r(0x33, f3[bits(c, 6, 5)], bits(c, 6, 5) == 0 ? 0x20 : 0, rd, rd, rs2);
  switch (bits(c, 6, 5)) {
  case 0:
    return enc_r(0x3b, 0, 0x20, rd, rd, rs2); /* subw */
  case 1:
    return enc_r(0x3b, 0, 0, rd, rd, rs2); /* addw */
  default:
    return 0;
  }
}
static int32_t c_jimm(uint32_t c) {
  return (int32_t)sext((bits(c, 12, 12) << 11) | (bits(c, 11, 11) << 4) | (bits(c, 10, 9) << 8) |
                           (bits(c, 8, 8) << 10) | (bits(c, 7, 7) << 6) | (bits(c, 6, 6) << 7) |
                           (bits(c, 5, 3) << 1) | (bits(c, 2, 2) << 5),
                       12);
}
static int32_t c_bimm(uint32_t c) {
  return (int32_t)sext((bits(c, 12, 12) << 8) | (bits(c, 11, 10) << 3) | (bits(c, 6, 5) << 6) |
                           (bits(c, 4, 3) << 1) | (bits(c, 2, 2) << 5),
                       9);
}
static uint32_t x_j(uint32_t c) { return enc_j(0, c_jimm(c)); }
static uint32_t x_beqz(uint32_t c) { return enc_b(0, c_rs1p(c), 0, c_bimm(c)); }
static uint32_t x_bnez(uint32_t c) { return enc_b(1, c_rs1p(c), 0, c_bimm(c)); }
static uint32_t x_slli(uint32_t c) {
  return enc_i(0x13, 1, c_rd(c), c_rd(c), (int32_t)((bits(c, 12, 12) << 5) | bits(c, 6, 2)));
}
static uint32_t c_uimm_dsp(uint32_t c) {
  return (bits(c, 12, 12) << 5) | (bits(c, 6, 5) << 3) | (bits(c, 4, 2) << 6);
}
static uint32_t x_fldsp(uint32_t c) { return enc_i(0x07, 3, c_rd(c), 2, (int32_t)c_uimm_dsp(c)); }
static uint32_t x_lwsp(uint32_t c) {
  uint32_t imm = (bits(c, 12, 12) << 5) | (bits(c, 6, 4) << 2) | (bits(c, 3, 2) << 6);
  return c_rd(c) ? enc_i(0x03, 2, c_rd(c), 2, (int32_t)imm) : 0;
}
static uint32_t x_ldsp(uint32_t c) {
  return c_rd(c) ? enc_i(0x03, 3, c_rd(c), 2, (int32_t)c_uimm_dsp(c)) : 0;
}
static uint32_t x_jr_mv_add(uint32_t c) {
  uint32_t rd = c_rd(c), rs2 = c_rs2(c);
  if (!bits(c, 12, 12)) {
    if (rs2 == 0)
      return rd ? enc_i(0x67, 0, 0, rd, 0) : 0; /* c.jr */
    return enc_r(0x33, 0, 0, rd, 0, rs2);       /* c.mv */
  }
  if (rs2 == 0)
    return rd ? enc_i(0x67, 0, 1, rd, 0) : 0x00100073; /* c.jalr / c.ebreak */
  return enc_r(0x33, 0, 0, rd, rd, rs2);               /* c.add */
}
static uint32_t c_uimm_sdsp(uint32_t c) { return (bits(c, 12, 10) << 3) | (bits(c, 9, 7) << 6); }
static uint32_t x_fsdsp(uint32_t c) { return enc_s(0x27, 3, 2, c_rs2(c), (int32_t)c_uimm_sdsp(c)); }
static uint32_t x_swsp(uint32_t c) {
  uint32_t imm = (bits(c, 12, 9) << 2) | (bits(c, 8, 7) << 6);
  return enc_s(0x23, 2, 2, c_rs2(c), (int32_t)imm);
}
static uint32_t x_sdsp(uint32_t c) { return enc_s(0x23, 3, 2, c_rs2(c), (int32_t)c_uimm_sdsp(c)); }

typedef struct rv_cop {
  uint16_t mask, match;
  rv_expand_fn expand;
} rv_cop;

/* Indexed by quadrant (bits 1:0) and funct3 (bits 15:13). */
static const rv_cop rv_cops[] = {
    {0xe003, 0x0000, x_addi4spn}, {0xe003, 0x2000, x_fld},          {0xe003, 0x4000, x_lw},
    {0xe003, 0x6000, x_ld},       {0xe003, 0xa000, x_fsd},          {0xe003, 0xc000, x_sw},
    {0xe003, 0xe000, x_sd},       {0xe003, 0x0001, x_addi},         {0xe003, 0x2001, x_addiw},
    {0xe003, 0x4001, x_li},       {0xe003, 0x6001, x_lui_addi16sp}, {0xe003, 0x8001, x_misc_alu},
    {0xe003, 0xa001, x_j},        {0xe003, 0xc001, x_beqz},         {0xe003, 0xe001, x_bnez},
    {0xe003, 0x0002, x_slli},     {0xe003, 0x2002, x_fldsp},        {0xe003, 0x4002, x_lwsp},
    {0xe003, 0x6002, x_ldsp},     {0xe003, 0x8002, x_jr_mv_add},    {0xe003, 0xa002, x_fsdsp},
    {0xe003, 0xc002, x_swsp},     {0xe003, 0xe002, x_sdsp},
};

uint32_t rv_expand_compressed(uint16_t c) {
  for (size_t i = 0; i < ARRAY_SIZE(rv_cops); i++)
    if ((c & rv_cops[i].mask) == rv_cops[i].match)
      return rv_cops[i].expand(c);
  return 0;
}
